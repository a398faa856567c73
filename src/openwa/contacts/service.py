"""Contact use cases: the directory the session built from its chats (from the database,
in any state), profile pictures and "is this number on WhatsApp" (through the engine)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from openwa.contacts.repository import ContactRepository
from openwa.contacts.schemas import Contact, NumberCheck, PresenceSubscribed, ProfilePicture
from openwa.db.models import ContactRow, SessionRow
from openwa.engines.registry import EngineRegistry
from openwa.errors import NotFound
from openwa.kit.chat_ids import is_lid, normalize_chat_id, phone_of
from openwa.kit.pagination import PageParams
from openwa.kit.phone import normalize_phone
from openwa.sessions.calls import engine_call, ready_client
from openwa.sessions.runtime import SessionRuntime

CAPABILITY = "contacts"


def to_schema(row: ContactRow) -> Contact:
    return Contact(
        id=row.chat_id,
        name=row.name,
        push_name=row.push_name,
        phone_number=phone_of(row.chat_id),
        lid=row.lid,
        updated_at=row.updated_at,
    )


class ContactService:
    """Contact use cases; directory reads on the session the caller hands over."""

    def __init__(self, runtime: SessionRuntime, engines: EngineRegistry) -> None:
        self._runtime = runtime
        self._engines = engines

    async def page(
        self, db: AsyncSession, session_id: str, params: PageParams
    ) -> tuple[list[Contact], int]:
        rows, total = await ContactRepository(db).page(session_id, params)
        return [to_schema(row) for row in rows], total

    async def get(self, db: AsyncSession, session_id: str, contact_id: str) -> Contact:
        address = normalize_chat_id(contact_id)
        contacts = ContactRepository(db)
        row = await contacts.get(session_id, address)
        if row is None and is_lid(address):  # merged into the phone number it maps to
            row = await contacts.by_lid(session_id, address)
        if row is None:
            raise NotFound("contact not found", details={"contactId": address})
        return to_schema(row)

    async def profile_picture(self, session: SessionRow, contact_id: str) -> ProfilePicture:
        """Any address may be asked about, known to the directory or not."""
        address = normalize_chat_id(contact_id)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        return ProfilePicture(url=await engine_call(client.profile_picture(address)))

    async def subscribe_presence(self, session: SessionRow, contact_id: str) -> PresenceSubscribed:
        """Presence of a contact from now on, as `presence.update` events (the engine
        asks WhatsApp; it answers while the session shows itself online)."""
        address = normalize_chat_id(contact_id)
        client = ready_client(self._runtime, self._engines, session, "presence_subscribe")
        await engine_call(client.subscribe_presence(address), contactId=address)
        return PresenceSubscribed(contact_id=address)

    async def check(self, session: SessionRow, phone_number: str) -> NumberCheck:
        digits = normalize_phone(phone_number)
        client = ready_client(self._runtime, self._engines, session, CAPABILITY)
        chat_id = await engine_call(client.check_number(digits))
        return NumberCheck(phone_number=digits, exists=chat_id is not None, chat_id=chat_id)
