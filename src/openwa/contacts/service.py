"""Contact use cases: the directory the session built from its chats (from the database,
in any state), profile pictures and "is this number on WhatsApp" (through the engine)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.contacts.repository import ContactRepository
from openwa.contacts.schemas import Contact, NumberCheck, ProfilePicture
from openwa.db.models import ContactRow, SessionRow
from openwa.engines.base import EngineClient, EngineRefused, SendFailed
from openwa.engines.registry import EngineRegistry
from openwa.errors import EngineError, NotFound, NotSupported, SessionNotReady
from openwa.kit.chat_ids import normalize_chat_id, phone_of
from openwa.kit.pagination import PageParams
from openwa.kit.phone import normalize_phone
from openwa.sessions.runtime import SessionRuntime

CAPABILITY = "contacts"
_T = TypeVar("_T")


def to_schema(row: ContactRow) -> Contact:
    return Contact(
        id=row.chat_id,
        name=row.name,
        push_name=row.push_name,
        phone_number=phone_of(row.chat_id),
        updated_at=row.updated_at,
    )


class ContactService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        runtime: SessionRuntime,
        engines: EngineRegistry,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._engines = engines

    async def page(self, session_id: str, params: PageParams) -> tuple[list[Contact], int]:
        async with self._db() as db:
            rows, total = await ContactRepository(db).page(session_id, params)
        return [to_schema(row) for row in rows], total

    async def get(self, session_id: str, contact_id: str) -> Contact:
        address = normalize_chat_id(contact_id)
        async with self._db() as db:
            row = await ContactRepository(db).get(session_id, address)
        if row is None:
            raise NotFound("contact not found", details={"contactId": address})
        return to_schema(row)

    async def profile_picture(self, session: SessionRow, contact_id: str) -> ProfilePicture:
        """Any address may be asked about, known to the directory or not."""
        address = normalize_chat_id(contact_id)
        client = self._client(session)
        return ProfilePicture(url=await self._call(client.profile_picture(address)))

    async def check(self, session: SessionRow, phone_number: str) -> NumberCheck:
        digits = normalize_phone(phone_number)
        client = self._client(session)
        chat_id = await self._call(client.check_number(digits))
        return NumberCheck(phone_number=digits, exists=chat_id is not None, chat_id=chat_id)

    def _client(self, session: SessionRow) -> EngineClient:
        """The running client of a `ready` session whose engine does contacts."""
        engine = self._engines.get(session.engine)
        if CAPABILITY not in engine.capabilities:
            raise NotSupported(details={"engine": session.engine, "capability": CAPABILITY})
        client = self._runtime.client(session.id)
        if client is None or session.id not in self._runtime.ready_sessions():
            raise SessionNotReady(
                "the session must be ready to ask WhatsApp", details={"status": session.status}
            )
        return client

    @staticmethod
    async def _call(call: Awaitable[_T]) -> _T:
        """Await an engine call, turning its failures into the contract's errors."""
        try:
            return await call
        except EngineRefused as exc:
            raise EngineError(str(exc), details={"reason": str(exc)}) from exc
        except SendFailed as exc:
            # The connection went away between the readiness check and the call.
            raise SessionNotReady(str(exc), details={"reason": str(exc)}) from exc
