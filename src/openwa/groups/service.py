"""Group use cases: list, create, read, change, membership, invite link, leave.

Groups live in WhatsApp, not in our database: every call goes to the session's running
engine client, so the session must be `ready` here (the database only names members
the engine left as LIDs by the numbers the session knows them by). What the engine
refuses (not a participant, not an admin, unknown group) is ENGINE_ERROR with the
engine's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import SessionRow
from openwa.engines.base import GroupInfo
from openwa.engines.registry import EngineRegistry
from openwa.errors import InvalidChatId
from openwa.groups.schemas import (
    INVITE_LINK_BASE,
    Group,
    GroupCreate,
    GroupLeft,
    GroupParticipant,
    GroupParticipantsUpdate,
    GroupSettings,
    GroupUpdate,
    InviteCode,
    ParticipantResult,
)
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, is_lid, normalize_chat_id
from openwa.kit.pagination import PageParams
from openwa.messages.lids import phone_ids
from openwa.sessions.calls import engine_call, ready_client
from openwa.sessions.runtime import SessionRuntime

CAPABILITY = "groups"
_EPOCH = datetime.min.replace(tzinfo=UTC)


def to_schema(info: GroupInfo, phones: Mapping[str, str] | None = None) -> Group:
    """The group as clients see it: members and owner by phone number where the engine
    gave one or `phones` (LID -> phone id, the session's contacts) knows one, the LID
    beside a member's."""
    phones = phones or {}

    def member(entry: dict[str, str]) -> GroupParticipant:
        given, lid = entry["id"], entry.get("lid")
        if is_lid(given):
            given, lid = phones.get(given, given), given
        return GroupParticipant(id=given, role=entry["role"], lid=lid if lid != given else None)

    return Group(
        id=info.id,
        subject=info.subject,
        description=info.description,
        owner=phones.get(info.owner, info.owner) if info.owner else info.owner,
        participants=[member(p) for p in info.participants],
        settings=GroupSettings(
            announce=bool(info.settings.get("announce", False)),
            restrict=bool(info.settings.get("restrict", False)),
        ),
        created_at=info.created_at,
    )


async def shown(read: AsyncSession, session_id: str, infos: Sequence[GroupInfo]) -> list[Group]:
    """`infos` as clients see them (`to_schema`), the LIDs engines left in them mapped
    from the session's contacts. Baileys and whatsapp-web.js name the members of a
    group that addresses them by LID by it alone, though the session may have learned
    their numbers from their messages: one person was a number in `message.received`
    and a LID here."""
    lids = {
        who
        for info in infos
        for who in (info.owner, *(p["id"] for p in info.participants))
        if who is not None and is_lid(who)
    }
    phones = await phone_ids(read, session_id, lids) if lids else {}
    return [to_schema(info, phones) for info in infos]


async def _shown_one(read: AsyncSession, session: SessionRow, info: GroupInfo) -> Group:
    (group,) = await shown(read, session.id, [info])
    return group


def group_address(raw: str) -> str:
    """The canonical group address in `raw`; INVALID_CHAT_ID when it is not one."""
    problem = InvalidChatId("not a group address (...@g.us)", details={"groupId": raw[:128]})
    try:
        address = normalize_chat_id(raw)
    except InvalidChatId as exc:
        raise problem from exc
    if not address.endswith(GROUP_SUFFIX):
        raise problem
    return address


def participant_addresses(raw: list[str]) -> list[str]:
    """User addresses of `raw` (numbers or addresses), in order, without repeats."""
    addresses: dict[str, None] = {}
    for index, value in enumerate(raw):
        details = {"field": f"participants.{index}", "chatId": value}
        try:
            address = normalize_chat_id(value)
        except InvalidChatId as exc:
            raise InvalidChatId(exc.message, details=details) from exc
        # Members are people: user addresses, or the `@lid` form engines report.
        if not (address.endswith(USER_SUFFIX) or address.endswith("@lid")):
            raise InvalidChatId(
                "a participant must be a user, not a group or channel", details=details
            )
        addresses[address] = None
    return list(addresses)


def _sort_key(info: GroupInfo) -> tuple[datetime, str]:
    return (info.created_at or _EPOCH, info.id)


class GroupService:
    """Group use cases: every one goes to the engine."""

    def __init__(self, runtime: SessionRuntime, engines: EngineRegistry) -> None:
        self._runtime = runtime
        self._engines = engines

    async def page(
        self, read: AsyncSession, session: SessionRow, params: PageParams
    ) -> tuple[list[Group], int]:
        """The groups the account is in, oldest first (engines hand out all at once)."""
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        infos = sorted(await engine_call(client.groups()), key=_sort_key)
        chunk = infos[params.offset : params.offset + params.limit]
        return await shown(read, session.id, chunk), len(infos)

    async def create(self, read: AsyncSession, session: SessionRow, body: GroupCreate) -> Group:
        participants = participant_addresses(body.participants)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        info = await engine_call(client.create_group(body.name, participants))
        return await _shown_one(read, session, info)

    async def get(self, read: AsyncSession, session: SessionRow, group_id: str) -> Group:
        address = group_address(group_id)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        info = await engine_call(client.group_info(address), groupId=address)
        return await _shown_one(read, session, info)

    async def update(
        self, read: AsyncSession, session: SessionRow, group_id: str, body: GroupUpdate
    ) -> Group:
        address = group_address(group_id)
        settings = (
            body.settings.model_dump(exclude_none=True) if body.settings is not None else None
        )
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        info = await engine_call(
            client.update_group(address, body.subject, body.description, settings or None),
            groupId=address,
        )
        return await _shown_one(read, session, info)

    async def change_participants(
        self,
        read: AsyncSession,
        session: SessionRow,
        group_id: str,
        body: GroupParticipantsUpdate,
    ) -> list[ParticipantResult]:
        """A status per participant, each named as the group's reads name them (`shown`):
        an engine answers for a LID-addressed group by LID, though the client named the
        member by the number the group's read showed."""
        address = group_address(group_id)
        participants = participant_addresses(body.participants)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        results = await engine_call(
            client.change_participants(address, body.action, participants), groupId=address
        )
        lids = {r.id for r in results if is_lid(r.id)}
        phones = await phone_ids(read, session.id, lids) if lids else {}
        return [ParticipantResult(id=phones.get(r.id, r.id), status=r.status) for r in results]

    async def invite_code(self, session: SessionRow, group_id: str) -> InviteCode:
        address = group_address(group_id)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        code = await engine_call(client.invite_code(address), groupId=address)
        return InviteCode(code=code, link=INVITE_LINK_BASE + code)

    async def leave(self, session: SessionRow, group_id: str) -> GroupLeft:
        address = group_address(group_id)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        await engine_call(client.leave_group(address), groupId=address)
        return GroupLeft(id=address)
