"""Group use cases: list, create, read, change, membership, invite link, leave.

Groups live in WhatsApp, not in our database: every call goes to the session's running
engine client, so the session must be `ready` here. What the engine refuses (not a
participant, not an admin, unknown group) is ENGINE_ERROR with the engine's reason.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import SessionRow
from openwa.engines.base import EngineClient, EngineRefused, GroupInfo, SendFailed
from openwa.engines.registry import EngineRegistry
from openwa.errors import EngineError, InvalidChatId, NotSupported, SessionNotReady
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
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, normalize_chat_id
from openwa.kit.pagination import PageParams
from openwa.sessions.runtime import SessionRuntime

CAPABILITY = "groups"
_T = TypeVar("_T")
_EPOCH = datetime.min.replace(tzinfo=UTC)


def to_schema(info: GroupInfo) -> Group:
    return Group(
        id=info.id,
        subject=info.subject,
        description=info.description,
        owner=info.owner,
        participants=[GroupParticipant(id=p["id"], role=p["role"]) for p in info.participants],
        settings=GroupSettings(
            announce=bool(info.settings.get("announce", False)),
            restrict=bool(info.settings.get("restrict", False)),
        ),
        created_at=info.created_at,
    )


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
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        runtime: SessionRuntime,
        engines: EngineRegistry,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._engines = engines

    async def page(self, session: SessionRow, params: PageParams) -> tuple[list[Group], int]:
        """The groups the account is in, oldest first (engines hand out all at once)."""
        client = self._client(session)
        infos = sorted(await self._call(client.groups()), key=_sort_key)
        chunk = infos[params.offset : params.offset + params.limit]
        return [to_schema(info) for info in chunk], len(infos)

    async def create(self, session: SessionRow, body: GroupCreate) -> Group:
        participants = participant_addresses(body.participants)
        client = self._client(session)
        return to_schema(await self._call(client.create_group(body.name, participants)))

    async def get(self, session: SessionRow, group_id: str) -> Group:
        address = group_address(group_id)
        client = self._client(session)
        return to_schema(await self._call(client.group_info(address), address))

    async def update(self, session: SessionRow, group_id: str, body: GroupUpdate) -> Group:
        address = group_address(group_id)
        settings = (
            body.settings.model_dump(exclude_none=True) if body.settings is not None else None
        )
        client = self._client(session)
        info = await self._call(
            client.update_group(address, body.subject, body.description, settings or None),
            address,
        )
        return to_schema(info)

    async def change_participants(
        self, session: SessionRow, group_id: str, body: GroupParticipantsUpdate
    ) -> list[ParticipantResult]:
        address = group_address(group_id)
        participants = participant_addresses(body.participants)
        client = self._client(session)
        results = await self._call(
            client.change_participants(address, body.action, participants), address
        )
        return [ParticipantResult(id=r.id, status=r.status) for r in results]

    async def invite_code(self, session: SessionRow, group_id: str) -> InviteCode:
        address = group_address(group_id)
        client = self._client(session)
        code = await self._call(client.invite_code(address), address)
        return InviteCode(code=code, link=INVITE_LINK_BASE + code)

    async def leave(self, session: SessionRow, group_id: str) -> GroupLeft:
        address = group_address(group_id)
        client = self._client(session)
        await self._call(client.leave_group(address), address)
        return GroupLeft(id=address)

    def _client(self, session: SessionRow) -> EngineClient:
        """The running client of a `ready` session whose engine does groups."""
        engine = self._engines.get(session.engine)
        if CAPABILITY not in engine.capabilities:
            raise NotSupported(details={"engine": session.engine, "capability": CAPABILITY})
        client = self._runtime.client(session.id)
        if client is None or session.id not in self._runtime.ready_sessions():
            raise SessionNotReady(
                "the session must be ready to manage groups", details={"status": session.status}
            )
        return client

    @staticmethod
    async def _call(call: Awaitable[_T], group_id: str | None = None) -> _T:
        """Await an engine call, turning its refusals into the contract's errors."""
        try:
            return await call
        except EngineRefused as exc:
            details = {"reason": str(exc)}
            if group_id is not None:
                details["groupId"] = group_id
            raise EngineError(str(exc), details=details) from exc
        except SendFailed as exc:
            # The connection went away between our readiness check and the call.
            raise SessionNotReady(str(exc), details={"reason": str(exc)}) from exc
