"""Chat use cases: the chat list and a chat's history (from the database, in any state),
marking a chat read and showing typing (through the engine, on a `ready` session)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from openwa.chats.repository import ChatRepository, ChatSummary
from openwa.chats.schemas import Chat, ChatRead, Presence, PresenceState
from openwa.contacts.repository import ContactRepository
from openwa.db.models import SessionRow
from openwa.engines.registry import EngineRegistry
from openwa.kit.chat_ids import GROUP_SUFFIX, normalize_chat_id
from openwa.kit.clock import utcnow
from openwa.kit.pagination import PageParams
from openwa.media.links import MediaLinks
from openwa.messages.schemas import Message
from openwa.messages.wire import to_schema as message_schema
from openwa.sessions.calls import engine_call, ready_client
from openwa.sessions.runtime import SessionRuntime


async def _chat(links: MediaLinks, summary: ChatSummary, name: str | None) -> Chat:
    return Chat(
        id=summary.chat_id,
        name=name,
        is_group=summary.chat_id.endswith(GROUP_SUFFIX),
        last_message=await message_schema(links, summary.last_message),
        unread_count=summary.unread_count,
        last_activity_at=summary.last_activity_at,
    )


class ChatService:
    """Chat use cases on the sessions the caller hands over (a request's reader or unit
    of work); the service itself holds only the runtime, the engines and the links."""

    def __init__(
        self, runtime: SessionRuntime, engines: EngineRegistry, *, links: MediaLinks
    ) -> None:
        self._runtime = runtime
        self._engines = engines
        self._links = links

    async def page(
        self, db: AsyncSession, session_id: str, params: PageParams
    ) -> tuple[list[Chat], int]:
        summaries, total = await ChatRepository(db).page(session_id, params)
        names = await ContactRepository(db).display_names(
            session_id, [s.chat_id for s in summaries]
        )
        return [await _chat(self._links, s, names.get(s.chat_id)) for s in summaries], total

    async def history(
        self, db: AsyncSession, session_id: str, chat_id: str, params: PageParams
    ) -> tuple[list[Message], int]:
        """The chat's stored messages, newest first; an unknown chat is an empty page.
        A mapped LID names the phone number's chat, where its messages were merged."""
        address = await ContactRepository(db).phone_id(session_id, normalize_chat_id(chat_id))
        rows, total = await ChatRepository(db).history(session_id, address, params)
        return [await message_schema(self._links, row) for row in rows], total

    async def mark_read(
        self, db: AsyncSession, session: SessionRow, chat_id: str, *, read: AsyncSession
    ) -> ChatRead:
        """Tell WhatsApp the chat's unread inbound messages were read, then remember it.

        The unread ones are read on `read`, so the engine call runs before the unit of
        work `db` takes its first statement (and, on SQLite, the write lock). A mapped
        LID names the phone number's chat, where its messages were merged (as in
        `history`): by the LID it found nothing to mark, and answered 0."""
        address = normalize_chat_id(chat_id)
        client = ready_client(self._runtime, self._engines, session, "chats")
        address = await ContactRepository(read).phone_id(session.id, address)
        unread = await ChatRepository(read).unread(session.id, address)
        if not unread:
            return ChatRead(chat_id=address, marked=0)
        ids = list(unread)
        senders = {mid: sender for mid, sender in unread.items() if sender}
        # The engine first: when it fails the messages stay unread and the call can be retried.
        await engine_call(client.mark_read(address, ids, senders), chatId=address)
        marked = await ChatRepository(db).mark_read(session.id, ids, utcnow())
        return ChatRead(chat_id=address, marked=marked)

    async def set_presence(
        self, session: SessionRow, chat_id: str, state: PresenceState
    ) -> Presence:
        address = normalize_chat_id(chat_id)
        client = ready_client(self._runtime, self._engines, session, "presence")
        await engine_call(client.set_presence(address, state), chatId=address)
        return Presence(chat_id=address, state=state)
