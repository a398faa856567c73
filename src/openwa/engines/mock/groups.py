"""Groups on the mock network, shared through the database by every mock session.

A group made by one mock session is seen by the others it adds; only admins may change
it (WhatsApp's "not an admin" is `EngineRefused`); every member online gets
`GroupUpdated` for each change.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from openwa.engines.base import (
    EngineRefused,
    GroupInfo,
    GroupUpdated,
    ParticipantResult,
    SendFailed,
)
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, phone_of

if TYPE_CHECKING:
    from openwa.engines.mock.engine import MockClient, MockNetwork

_ADMINS = {"admin", "superadmin"}


def _jid(phone: str) -> str:
    return phone + USER_SUFFIX


class MockGroups:
    def __init__(self, client: MockClient, network: MockNetwork) -> None:
        self._client = client
        self._network = network

    async def _load(self, group_id: str) -> tuple[GroupInfo, dict[str, str]]:
        found = await self._network.directory.group(group_id)
        if found is None:
            raise EngineRefused(f"group {group_id} does not exist")
        row, members = found
        info = GroupInfo(
            id=row.id,
            subject=row.subject,
            description=row.description,
            owner=_jid(row.created_by),
            participants=[
                {"id": _jid(phone), "role": role} for phone, role in sorted(members.items())
            ],
            settings={k: bool(v) for k, v in row.settings.items()},
            created_at=row.created_at,
        )
        return info, members

    async def _as_member(
        self, group_id: str, *, admin: bool = False
    ) -> tuple[GroupInfo, dict[str, str]]:
        info, members = await self._load(group_id)
        role = members.get(self._client.phone)
        if role is None:
            raise EngineRefused("this account is not a participant of the group")
        if admin and role not in _ADMINS:
            raise EngineRefused("this account is not an admin of the group")
        return info, members

    async def _announce(self, phones: set[str], event: GroupUpdated) -> None:
        for phone in sorted(phones):
            member = self._network.online(phone)
            if member is not None:
                await member.emit(event)

    async def all(self) -> list[GroupInfo]:
        ids = await self._network.directory.groups_of(self._client.phone)
        return [(await self._load(group_id))[0] for group_id in ids]

    async def info(self, group_id: str) -> GroupInfo:
        return (await self._as_member(group_id))[0]

    async def create(self, subject: str, participants: list[str]) -> GroupInfo:
        me = self._client.phone
        phones = [p for p in (phone_of(c) for c in participants) if p]
        group_id = (
            "120363" + "".join(secrets.choice("0123456789") for _ in range(12)) + GROUP_SUFFIX
        )
        code = secrets.token_urlsafe(16)
        await self._network.directory.create_group(group_id, subject, me, phones, code)
        info, members = await self._load(group_id)
        await self._announce(
            set(members), GroupUpdated(group_id, "created", [_jid(p) for p in phones], _jid(me))
        )
        return info

    async def update(
        self,
        group_id: str,
        subject: str | None,
        description: str | None,
        settings: dict[str, bool] | None,
    ) -> GroupInfo:
        info, members = await self._as_member(group_id, admin=True)
        changes: dict[str, object] = {}
        actions = []
        if subject is not None:
            changes["subject"] = subject
            actions.append("subject")
        if description is not None:
            changes["description"] = description
            actions.append("description")
        if settings is not None:
            changes["settings"] = {**info.settings, **settings}
            actions.append("settings")
        await self._network.directory.update_group(group_id, **changes)
        me = _jid(self._client.phone)
        for action in actions:
            await self._announce(set(members), GroupUpdated(group_id, action, [], me))
        return (await self._load(group_id))[0]

    async def change(
        self, group_id: str, action: str, participants: list[str]
    ) -> list[ParticipantResult]:
        _, members = await self._as_member(group_id, admin=True)
        roles: dict[str, str | None] = {}
        results = []
        for chat_id in participants:
            phone = phone_of(chat_id)
            status = "ok"
            if phone is None:
                status = "not_found"
            elif action == "add":
                status = "already_member" if phone in members else "ok"
                if status == "ok":
                    roles[phone] = "member"
            elif phone not in members:
                status = "not_member"
            elif members[phone] == "superadmin" and action in ("remove", "demote"):
                status = "not_allowed"
            else:
                roles[phone] = {"remove": None, "promote": "admin", "demote": "member"}[action]
            if status != "ok":
                roles.pop(phone or "", None)
            results.append(ParticipantResult(id=chat_id, status=status))
        await self._network.directory.set_roles(group_id, roles)
        changed = [_jid(p) for p in roles]
        if changed:
            event = GroupUpdated(group_id, action, changed, _jid(self._client.phone))
            await self._announce(set(members) | set(roles), event)
        return results

    async def invite_code(self, group_id: str) -> str:
        await self._as_member(group_id, admin=True)
        found = await self._network.directory.group(group_id)
        assert found is not None
        return found[0].invite_code

    async def leave(self, group_id: str) -> None:
        _, members = await self._as_member(group_id)
        me = self._client.phone
        await self._network.directory.set_roles(group_id, {me: None})
        await self._announce(set(members), GroupUpdated(group_id, "leave", [_jid(me)], _jid(me)))

    async def recipients_for_send(self, group_id: str) -> list[str]:
        """Members to deliver a group message to; refuses non-members and announce groups."""
        try:
            info, members = await self._as_member(group_id)
        except EngineRefused as exc:
            raise SendFailed(str(exc), retryable=False) from exc
        me = self._client.phone
        if info.settings.get("announce") and members.get(me) not in _ADMINS:
            raise SendFailed("only admins may send to this group", retryable=False)
        return [phone for phone in members if phone != me]
