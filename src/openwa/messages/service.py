"""Message use cases: accept a send, read one, cancel or revoke one.

Applying engine reports lives in `messages/reports.py`, the wire mapping in
`messages/wire.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.contacts.repository import ContactRepository
from openwa.db.base import table_of
from openwa.db.engine import on_commit, stage_insert
from openwa.db.group_commit import GroupCommit
from openwa.db.models import IdempotencyRow, MessageRow, SessionRow
from openwa.engines.base import (
    EngineClient,
    EngineRefused,
    SendFailed,
)
from openwa.engines.content import (
    MEDIA_KINDS,
    ContactCard,
    Contacts,
    Content,
    Location,
    MediaFile,
    Reaction,
    Reply,
    Text,
    to_json,
)
from openwa.errors import (
    EngineError,
    IdempotencyConflict,
    MessageNotFound,
    MessageNotPending,
    NotFound,
    SessionNotFound,
    SessionNotReady,
)
from openwa.events.log import EventLog
from openwa.keys.principal import Principal
from openwa.kit.chat_ids import is_lid, normalize_chat_id
from openwa.kit.clock import utcnow
from openwa.kit.ids import whatsapp_message_id
from openwa.kit.phone import normalize_phone
from openwa.kit.signal import Signal
from openwa.media.ingest import StagedMedia
from openwa.media.links import MediaLinks
from openwa.media.types import extension_for
from openwa.messages.lids import move_left_behind
from openwa.messages.repository import MessageRepository
from openwa.messages.schemas import (
    ContactMessageCreate,
    LocationMessageCreate,
    MediaMessageCreate,
    MediaUploadFields,
    Message,
    ReactionCreate,
    SendOptions,
    TextMessageCreate,
)
from openwa.messages.status import GONE_OUT, MessageStatus, can_cancel
from openwa.messages.vcard import vcard
from openwa.messages.wire import event_data, to_schema
from openwa.queue import outbox
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.status import Status
from openwa.storage.base import Storage
from openwa.storage.keys import sent_media_key

log = structlog.get_logger(__name__)

# Sessions in these states are not on their way to `ready`: sends are refused at once.
_REFUSING = {Status.CREATED, Status.STOPPED, Status.FAILED}


def _request_hash(route: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(
        route.encode() + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


class MessageService:
    """Accepting sends (through the group writer, its own unit of work), and reading and
    cancelling messages on the session the caller hands over; no session factory of its
    own beside the reader for accepts."""

    def __init__(
        self,
        events: EventLog,
        queued: Signal,
        storage: Storage,
        links: MediaLinks,
        *,
        directory: SessionDirectory,
        accepts: GroupCommit,
        read: async_sessionmaker[AsyncSession],
    ) -> None:
        self._directory = directory
        self._accepts = accepts
        self._read = read
        self._events = events
        self._queued = queued
        self._storage = storage
        self._links = links

    async def close(self) -> None:
        """Commit what was accepted and is still queued, then stop the group writer."""
        await self._accepts.close()

    async def event_data(self, row: MessageRow) -> dict[str, Any]:
        """The message as events carry it, with its media linked."""
        return await event_data(self._links, row)

    async def accept_text(
        self,
        session: SessionRow,
        principal: Principal,
        body: TextMessageCreate,
        idempotency_key: str | None,
    ) -> Message:
        content = Text(
            body.text,
            Reply(body.reply_to) if body.reply_to else None,
            tuple(normalize_chat_id(m) for m in body.mentions or ()),
        )
        return await self._accept(
            session, principal, content.kind, body.chat_id, content, body, idempotency_key
        )

    async def accept_media(
        self,
        session: SessionRow,
        principal: Principal,
        fields: MediaUploadFields | MediaMessageCreate,
        staged: StagedMedia,
        idempotency_key: str | None,
    ) -> Message:
        """The staged upload is removed however the send ends (a refused chat id
        included): a file left in the staging folder would belong to nobody, and
        nothing else removes it."""
        try:
            kind = MEDIA_KINDS[fields.type]
            reply = Reply(fields.reply_to) if fields.reply_to else None
            return await self._accept(
                session,
                principal,
                fields.type,
                fields.chat_id,
                lambda media: kind(media, fields.caption or None, reply),
                fields,
                idempotency_key,
                staged,
            )
        finally:
            staged.discard()

    async def accept_location(
        self,
        session: SessionRow,
        principal: Principal,
        body: LocationMessageCreate,
        idempotency_key: str | None,
    ) -> Message:
        content = Location(body.latitude, body.longitude, body.name, body.address)
        return await self._accept(
            session, principal, content.kind, body.chat_id, content, body, idempotency_key
        )

    async def accept_contacts(
        self,
        session: SessionRow,
        principal: Principal,
        body: ContactMessageCreate,
        idempotency_key: str | None,
    ) -> Message:
        cards = []
        for card in body.contacts:
            phone = normalize_phone(card.phone_number)
            cards.append(ContactCard(card.name, phone, vcard(card.name, phone)))
        content = Contacts(tuple(cards))
        return await self._accept(
            session, principal, content.kind, body.chat_id, content, body, idempotency_key
        )

    async def accept_reaction(
        self,
        session: SessionRow,
        principal: Principal,
        body: ReactionCreate,
        idempotency_key: str | None,
    ) -> Message:
        async with self._read() as db:
            target = await MessageRepository(db).get(session.id, body.message_id)
        if target is None:
            raise MessageNotFound(details={"messageId": body.message_id})
        content = Reaction(target.id, body.emoji)
        return await self._accept(
            session, principal, content.kind, target.chat_id, content, body, idempotency_key
        )

    async def media(
        self, db: AsyncSession, session_id: str, message_id: str
    ) -> tuple[dict[str, Any], Any]:
        """The message's media description and a stream of its bytes."""
        row = await MessageRepository(db).get(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        media = (row.content or {}).get("media")
        if not media or not media.get("key"):
            raise NotFound("this message has no stored media", details={"messageId": message_id})
        stream = self._storage.stream(media["key"])
        try:
            first = await anext(stream)
        except (FileNotFoundError, StopAsyncIteration) as exc:
            raise NotFound(
                "the media is no longer stored", details={"messageId": message_id}
            ) from exc

        async def chunks() -> Any:
            yield first
            async for chunk in stream:
                yield chunk

        return media, chunks()

    async def _by_phone_number(self, session_id: str, chat_id: str) -> tuple[str, str | None]:
        """`(chat id, its LID)`: a send to a LID the session has mapped goes to the phone
        number's chat, so that it stays one chat (a read, for LIDs only)."""
        if not is_lid(chat_id):
            return chat_id, None
        async with self._read() as db:
            mapped = await ContactRepository(db).phone_id(session_id, chat_id)
        return (mapped, chat_id) if mapped != chat_id else (chat_id, None)

    async def _accept(
        self,
        session: SessionRow,
        principal: Principal,
        type_: str,
        raw_chat_id: str,
        content: Content | Callable[[MediaFile], Content],
        body: SendOptions,
        idempotency_key: str | None,
        staged: StagedMedia | None = None,
    ) -> Message:
        """Store the message and its outbox job (and the idempotent answer) at once.

        A media send's content is made once its bytes are stored (`content` is then a
        function of the stored file); the row keeps the content's JSON form."""
        chat_id = raw_chat_id if type_ == "reaction" else normalize_chat_id(raw_chat_id)
        chat_id, chat_lid = await self._by_phone_number(session.id, chat_id)
        send_at = body.send_at
        request = body.model_dump(mode="json", by_alias=True, exclude_none=True)
        if staged is not None:
            # The same fields with other bytes are another request.
            request["media"] = {"sha256": staged.sha256, "mimetype": staged.mimetype}
        request_hash = _request_hash(f"{session.id}/{type_}", request)
        idem_id = (principal.key_id, session.id, idempotency_key) if idempotency_key else None
        message_id = whatsapp_message_id()
        # The session as last committed, from memory: no read on the hot path.
        current = self._directory.get(session.id)
        refusing = current is None or Status(current.status) in _REFUSING
        stored = None
        if idem_id is not None and (refusing or staged is not None):
            # A replay is answered even by a stopped session, and before storing bytes
            # that it would not need; the hot path (text, running session) reads nothing.
            async with self._read() as db:
                stored = await db.get(IdempotencyRow, idem_id)
        if stored is not None or refusing:
            if stored is not None:
                return self._replay(stored, request_hash)
            raise SessionNotReady(
                "start the session first", details={"status": current.status if current else None}
            )
        assert current is not None
        if staged is not None:
            key = sent_media_key(session.id, message_id, extension_for(staged.mimetype))
            await self._storage.put(key, staged.path, staged.mimetype)
            staged.discard()  # stored: the staging space is free before the write waits
            stored_media: MediaFile | None = MediaFile(
                key, staged.mimetype, staged.size, staged.filename or None
            )
        else:
            stored_media = None
        try:
            if callable(content):
                assert stored_media is not None  # a media send always comes with its bytes
                content = content(stored_media)
            sender = current.phone_number and f"{current.phone_number}@s.whatsapp.net"
            # Everything but the writes is done before the transaction, so the group's
            # transaction holds the writer only for them.
            now = utcnow()
            due = max(send_at, now) if send_at is not None else now
            values: dict[str, Any] = {
                "session_id": session.id,
                "id": message_id,
                "chat_id": chat_id,
                "chat_lid": chat_lid,
                "from_me": True,
                "sender": sender,
                "type": type_,
                "content": to_json(content),
                "status": MessageStatus.PENDING.value,
                "send_at": send_at,
                "timestamp": now,
                "created_at": now,
                "updated_at": now,
                "media_key": stored_media.key if stored_media is not None else None,
            }
            row = MessageRow(**values)
            message = await to_schema(self._links, row)
            answer = message.model_dump(mode="json", by_alias=True) if idem_id is not None else None
            # A send due beyond the worker's next look wakes nobody: that look finds it and
            # waits until its due time. One due sooner wakes the worker, which would
            # otherwise take it up to a look late.
            wake = send_at is None or send_at <= now + timedelta(seconds=outbox.LOOK_EVERY_S)

            async def write(db: AsyncSession) -> Message | IdempotencyRow:
                """The message, its outbox job and the idempotent answer: one unit of work."""
                nonlocal message, answer
                if chat_lid is None and is_lid(chat_id):
                    # A mapping may have come since the read above (a media upload takes
                    # seconds): under the LID, the message would have stayed a chat
                    # apart for good, the merge having moved what was there before it.
                    # (One not committed yet: `_left_behind`, after the commit.)
                    mapped = await ContactRepository(db).phone_id(session.id, chat_id)
                    if mapped != chat_id:
                        values.update(chat_id=mapped, chat_lid=chat_id)
                        message = await to_schema(self._links, MessageRow(**values))
                        if idem_id is not None:
                            answer = message.model_dump(mode="json", by_alias=True)
                if idem_id is not None:
                    stored = await db.get(IdempotencyRow, idem_id)
                    if stored is not None:
                        return stored
                # Staged: written with the other accepts of the group, before its commit.
                stage_insert(db, table_of(MessageRow), values)
                outbox.enqueue(db, session.id, message_id, due, now)
                if idem_id is not None:
                    db.add(
                        IdempotencyRow(
                            api_key_id=idem_id[0],
                            session_id=idem_id[1],
                            key=idem_id[2],
                            request_hash=request_hash,
                            status_code=202,
                            response=answer,
                            created_at=now,
                        )
                    )
                if wake:
                    on_commit(db, self._queued.notify)
                return message

            try:
                result = await self._accepts.run(write)
            except IntegrityError:
                async with self._read() as db:
                    # The same key raced in from a parallel request: answer as it was answered.
                    stored = await db.get(IdempotencyRow, idem_id) if idem_id is not None else None
                    gone = stored is None and await db.get(SessionRow, session.id) is None
                    # A commit that reached the database though its answer was lost, then
                    # run again alone, clashes with itself: its message is there.
                    written = await db.get(MessageRow, (session.id, message_id)) is not None
                if written:
                    return message  # no other request writes this message id
                if stored is not None:
                    replayed = self._replay(stored, request_hash)
                    if stored_media is not None:
                        # Nothing of this send was written: its bytes belong to no message.
                        await self._discard_media(stored_media.key)
                    return replayed
                if gone:
                    # Deleted since it was looked up: the message's foreign key refused it.
                    raise SessionNotFound(details={"session": session.id}) from None
                raise
            if isinstance(result, IdempotencyRow):
                # A parallel request with the same key was written first: this one wrote
                # nothing, and the bytes it stored belong to no message (unless the record
                # is this send's own, committed though its answer was lost, then run again).
                replayed = self._replay(result, request_hash)
                if stored_media is not None and (result.response or {}).get("id") != message_id:
                    await self._discard_media(stored_media.key)
                return replayed
            if result.chat_lid is None and is_lid(result.chat_id):
                return await self._left_behind(session.id, result, idem_id)
            return result
        except Exception:
            # However the accept failed (a value the database refused, a clash, the
            # database gone), bytes stored for it belong to no message unless its row
            # was written after all.
            if stored_media is not None and not await self._written(session.id, message_id):
                await self._discard_media(stored_media.key)
            raise

    async def _left_behind(
        self, session_id: str, message: Message, idem_id: tuple[str, str, str] | None
    ) -> Message:
        """A message written under a LID no mapping was found for: one a merge under way
        (a run of reports) committed meanwhile could not move it, having not seen it.
        Looked up again now that ours has committed, and moved to the number if mapped
        (`lids.move_left_behind`; the run does the same after its commit, so the one
        that commits second moves it). Answered as it is then, and so is a replay of
        the same `Idempotency-Key` (its stored answer is moved with it)."""
        try:
            async with self._read() as db:
                mapped = await ContactRepository(db).phone_id(session_id, message.chat_id)
            if mapped == message.chat_id:
                return message  # not mapped: a merge still to come moves it
            lid = message.chat_id

            async def move(db: AsyncSession) -> None:
                await move_left_behind(db, session_id, [lid])
                stored = await db.get(IdempotencyRow, idem_id) if idem_id is not None else None
                answer = stored.response if stored is not None else None
                if stored is not None and answer and answer.get("id") == message.id:
                    stored.response = {**answer, "chatId": mapped, "chatLid": lid}

            await self._accepts.run(move)
        except Exception:
            # Accepted all the same: the message is written, in the LID's chat for now.
            log.warning("lid_move_after_send_failed", message_id=message.id, exc_info=True)
            return message
        return message.model_copy(update={"chat_id": mapped, "chat_lid": message.chat_id})

    async def _written(self, session_id: str, message_id: str) -> bool:
        """Whether the message's row is there; True when that cannot be read (its bytes
        are then kept: the media sweep removes them a day later if it is not)."""
        try:
            async with self._read() as db:
                return await db.get(MessageRow, (session_id, message_id)) is not None
        except Exception:
            log.warning("accept_outcome_unread", message_id=message_id, exc_info=True)
            return True

    async def _discard_media(self, key: str) -> None:
        try:
            await self._storage.delete(key)
        except Exception:  # left for nobody; a failure here must not hide the answer
            log.warning("unsent_media_left", key=key, exc_info=True)

    @staticmethod
    def _replay(stored: IdempotencyRow, request_hash: str) -> Message:
        if stored.request_hash != request_hash:
            raise IdempotencyConflict(details={"idempotencyKey": stored.key})
        return Message.model_validate(stored.response)

    async def get(self, db: AsyncSession, session_id: str, message_id: str) -> Message:
        row = await MessageRepository(db).get(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        return await to_schema(self._links, row)

    async def cancel_or_revoke(
        self,
        db: AsyncSession,
        session_id: str,
        message_id: str,
        client: EngineClient | None,
        *,
        read: AsyncSession,
    ) -> Message:
        """Cancel a pending message (on the unit of work `db`), or revoke a sent one for
        everyone (an engine call: the message is read on `read`, so no write lock is held
        while the engine answers)."""
        row = await MessageRepository(read).get(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        if can_cancel(MessageStatus(row.status)):
            return await self._cancel(db, session_id, message_id)
        if not row.from_me:
            raise EngineError("only your own messages can be revoked", details={"fromMe": False})
        if row.status not in GONE_OUT:
            raise MessageNotPending(details={"status": row.status})
        if client is None:
            raise SessionNotReady("the session must be ready to revoke")
        try:
            await client.revoke(row.chat_id, row.engine_id or row.id)
        except (SendFailed, EngineRefused) as exc:
            raise EngineError(str(exc)) from exc
        await read.rollback()  # a fresh snapshot: the engine may have reported meanwhile
        return await self.get(read, session_id, message_id)

    async def _cancel(self, db: AsyncSession, session_id: str, message_id: str) -> Message:
        # The job before the message: the order the sender locks them in.
        job = await outbox.job_for(db, session_id, message_id)
        row = await MessageRepository(db).lock(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        if not can_cancel(MessageStatus(row.status)):
            raise MessageNotPending(details={"status": row.status})
        # A job a send worker holds is its to send (its run renews the lease while it
        # sends), and one marked handed over may have gone out: neither is cancelled.
        if job is not None and (
            job.handed_at is not None
            or (job.locked_until is not None and job.locked_until > utcnow())
        ):
            raise MessageNotPending("the message is being sent now", details={"status": "sending"})
        if job is not None:
            job.done = True
        row.status, row.updated_at = MessageStatus.CANCELLED.value, utcnow()
        return await to_schema(self._links, row)

    # Reports from engines, applied in order by the session's runtime worker.
