"""Message use cases: accept a send, read one, cancel one, and apply engine reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import structlog
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.engine import on_commit
from openwa.db.group_commit import GroupCommit
from openwa.db.models import IdempotencyRow, MessageRow, SessionRow, SetAsideReportRow
from openwa.engines.base import (
    ContactsSeen,
    EngineClient,
    EngineEvent,
    EngineRefused,
    GroupUpdated,
    InboundMedia,
    MessageAck,
    MessageReceived,
    MessageRevoked,
    ReactionReceived,
    SendFailed,
)
from openwa.errors import (
    EngineError,
    IdempotencyConflict,
    MessageNotFound,
    MessageNotPending,
    NotFound,
    SessionNotReady,
)
from openwa.events.log import EventLog
from openwa.events.types import (
    GROUP_UPDATE,
    MESSAGE_ACK,
    MESSAGE_REACTION,
    MESSAGE_RECEIVED,
    MESSAGE_REVOKED,
    MESSAGE_SENT,
    Event,
)
from openwa.keys.principal import Principal
from openwa.kit.chat_ids import chat_kind, normalize_chat_id
from openwa.kit.clock import utcnow
from openwa.kit.ids import whatsapp_message_id
from openwa.kit.phone import normalize_phone
from openwa.kit.signal import Signal
from openwa.media.ingest import StagedMedia
from openwa.media.links import MediaLinks
from openwa.media.types import extension_for
from openwa.messages.repository import MessageRepository, upsert_contact
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
from openwa.messages.status import GONE_OUT, MessageStatus, can_cancel, parse, path
from openwa.messages.vcard import vcard
from openwa.queue import outbox
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.runtime import session_event
from openwa.sessions.status import Status
from openwa.storage.base import Storage
from openwa.storage.keys import media_key, safe_id

log = structlog.get_logger(__name__)

# Sessions in these states are not on their way to `ready`: sends are refused at once.
_REFUSING = {Status.CREATED, Status.STOPPED, Status.FAILED}
_IGNORE_FLAGS = {"group": "groups", "status": "status", "channel": "channels"}


def _media_view(row: MessageRow, media: dict[str, Any] | None) -> dict[str, Any] | None:
    """Media as clients see it: where to download it, never our storage key."""
    if not media:
        return None
    if not media.get("key"):
        return {"deleted": True, "mimetype": media.get("mimetype"), "size": media.get("size")}
    view = {
        "url": f"/api/sessions/{row.session_id}/messages/{row.id}/media",
        "mimetype": media["mimetype"],
        "size": media["size"],
    }
    if media.get("filename"):
        view["filename"] = media["filename"]
    return view


def to_schema(row: MessageRow) -> Message:
    content = row.content or {}
    reaction = None
    if row.type == "reaction":
        reaction = {"messageId": content.get("messageId"), "emoji": content.get("emoji")}
    return Message(
        id=row.id,
        session_id=row.session_id,
        chat_id=row.chat_id,
        from_me=row.from_me,
        **{"from": row.sender},
        type=row.type,
        text=content.get("text"),
        reply_to=content.get("replyTo"),
        mentions=content.get("mentions"),
        caption=content.get("caption"),
        media=_media_view(row, content.get("media")),
        media_error=content.get("mediaError"),
        location=content.get("location"),
        contacts=content.get("contacts"),
        reaction=reaction,
        revoked=row.revoked_at is not None,
        status=row.status,
        error=row.error,
        send_at=row.send_at,
        timestamp=row.timestamp,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message_data(row: MessageRow) -> dict[str, Any]:
    """The message as events carry it (camelCase, no nulls), media not yet linked."""
    data: dict[str, Any] = to_schema(row).model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


@dataclass
class _Run:
    """What one run of reports has seen so far: stored message ids, the messages it
    acks (locked), contacts to note."""

    known: set[str]
    locked: dict[str, MessageRow] = field(default_factory=dict)
    inbound: dict[str, _Inbound | None] = field(default_factory=dict)
    contacts: dict[str, str | None] = field(default_factory=dict)

    def contact(self, chat_id: str, push_name: str | None) -> None:
        # Noted once per run, at its end; a later known name wins over none.
        if push_name or chat_id not in self.contacts:
            self.contacts[chat_id] = push_name


_MESSAGE_COLUMNS = [attr.key for attr in sa_inspect(MessageRow).column_attrs]


@dataclass(frozen=True)
class _Inbound:
    """An inbound message made ready outside the transaction: its row's values (a new
    row each time, so a unit retried alone adds a fresh one) and its event, if any."""

    values: dict[str, Any]
    event: Event | None

    def row(self) -> MessageRow:
        return MessageRow(**self.values)


def report_record(report: EngineEvent) -> dict[str, Any]:
    """A report as JSON for inspection (media bytes left out)."""
    record: dict[str, Any] = orjson.loads(
        orjson.dumps(
            report,
            default=lambda value: None if isinstance(value, bytes) else str(value),
        )
    )
    return record


def _request_hash(route: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(
        route.encode() + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


class MessageService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        queued: Signal,
        storage: Storage,
        links: MediaLinks,
        *,
        directory: SessionDirectory,
        accepts: GroupCommit,
        reports: GroupCommit,
        read: async_sessionmaker[AsyncSession],
    ) -> None:
        self._directory = directory
        self._accepts = accepts
        self._reports = reports
        self._read = read
        self._db = db
        self._events = events
        self._queued = queued
        self._storage = storage
        self._links = links

    async def close(self) -> None:
        """Commit what was accepted and is still queued, then stop the group writer."""
        await self._accepts.close()
        await self._reports.close()

    async def event_data(self, row: MessageRow) -> dict[str, Any]:
        """The message as events carry it, with its media linked."""
        data = message_data(row)
        media = (row.content or {}).get("media")
        if media:
            data["media"] = await self._links.describe(row.session_id, row.id, media)
        return data

    async def accept_text(
        self,
        session: SessionRow,
        principal: Principal,
        body: TextMessageCreate,
        idempotency_key: str | None,
    ) -> Message:
        content: dict[str, Any] = {"text": body.text}
        if body.reply_to:
            content["replyTo"] = body.reply_to
        if body.mentions:
            content["mentions"] = [normalize_chat_id(m) for m in body.mentions]
        return await self._accept(
            session,
            principal,
            "text",
            body.chat_id,
            content,
            body,
            idempotency_key,
        )

    async def accept_media(
        self,
        session: SessionRow,
        principal: Principal,
        fields: MediaUploadFields | MediaMessageCreate,
        staged: StagedMedia,
        idempotency_key: str | None,
    ) -> Message:
        content: dict[str, Any] = {}
        if fields.caption:
            content["caption"] = fields.caption
        if fields.reply_to:
            content["replyTo"] = fields.reply_to
        return await self._accept(
            session,
            principal,
            fields.type,
            fields.chat_id,
            content,
            fields,
            idempotency_key,
            staged,
        )

    async def accept_location(
        self,
        session: SessionRow,
        principal: Principal,
        body: LocationMessageCreate,
        idempotency_key: str | None,
    ) -> Message:
        location = body.model_dump(
            by_alias=True, exclude_none=True, include={"latitude", "longitude", "name", "address"}
        )
        return await self._accept(
            session,
            principal,
            "location",
            body.chat_id,
            {"location": location},
            body,
            idempotency_key,
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
            cards.append(
                {"name": card.name, "phoneNumber": phone, "vcard": vcard(card.name, phone)}
            )
        return await self._accept(
            session,
            principal,
            "contacts",
            body.chat_id,
            {"contacts": cards},
            body,
            idempotency_key,
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
        return await self._accept(
            session,
            principal,
            "reaction",
            target.chat_id,
            {"messageId": target.id, "emoji": body.emoji},
            body,
            idempotency_key,
        )

    async def media(self, session_id: str, message_id: str) -> tuple[dict[str, Any], Any]:
        """The message's media description and a stream of its bytes."""
        async with self._db() as db:
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

    async def _accept(
        self,
        session: SessionRow,
        principal: Principal,
        type_: str,
        raw_chat_id: str,
        content: dict[str, Any],
        body: SendOptions,
        idempotency_key: str | None,
        staged: StagedMedia | None = None,
    ) -> Message:
        """Store the message and its outbox job (and the idempotent answer) at once."""
        chat_id = raw_chat_id if type_ == "reaction" else normalize_chat_id(raw_chat_id)
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
        if staged is not None and (refusing or idem_id is not None):
            # Settle a replay before storing bytes that a replay would not need.
            async with self._read() as db:
                stored = await db.get(IdempotencyRow, idem_id) if idem_id is not None else None
            if stored is not None or refusing:
                staged.discard()
                if stored is not None:
                    return self._replay(stored, request_hash)
        if refusing:
            if idem_id is not None and staged is None:
                async with self._read() as db:
                    stored = await db.get(IdempotencyRow, idem_id)
                if stored is not None:
                    return self._replay(stored, request_hash)
            raise SessionNotReady(
                "start the session first", details={"status": current.status if current else None}
            )
        assert current is not None
        if staged is not None:
            key = media_key(session.id, message_id, extension_for(staged.mimetype))
            try:
                await self._storage.put(key, staged.path, staged.mimetype)
            finally:
                staged.discard()
            media: dict[str, Any] = {"key": key, "mimetype": staged.mimetype, "size": staged.size}
            if staged.filename:
                media["filename"] = staged.filename
            content = {**content, "media": media}
        sender = current.phone_number and f"{current.phone_number}@s.whatsapp.net"
        # Everything but the writes is done before the transaction, so the group's
        # transaction holds the writer only for them.
        now = utcnow()
        due = max(send_at, now) if send_at is not None else now
        values: dict[str, Any] = {
            "session_id": session.id,
            "id": message_id,
            "chat_id": chat_id,
            "from_me": True,
            "sender": sender,
            "type": type_,
            "content": content,
            "status": MessageStatus.PENDING.value,
            "send_at": send_at,
            "timestamp": now,
            "created_at": now,
            "updated_at": now,
            "media_key": (content.get("media") or {}).get("key"),
        }
        row = MessageRow(**values)
        message = to_schema(row)
        answer = message.model_dump(mode="json", by_alias=True) if idem_id is not None else None
        # A send due later wakes nobody: the worker waits for the next due time itself.
        due_now = send_at is None or send_at <= now

        async def write(db: AsyncSession) -> Message | IdempotencyRow:
            """The message, its outbox job and the idempotent answer: one unit of work."""
            if idem_id is not None:
                stored = await db.get(IdempotencyRow, idem_id)
                if stored is not None:
                    return stored
            # The same row on a retry alone: a rollback leaves it transient again.
            MessageRepository(db).add(row)
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
            if due_now:
                on_commit(db, self._queued.notify)
            return message

        try:
            result = await self._accepts.run(write)
        except IntegrityError:
            # The same key raced in from a parallel request: answer as it was answered.
            if idem_id is None:
                raise
            async with self._read() as db:
                stored = await db.get(IdempotencyRow, idem_id)
            if stored is None:
                raise
            return self._replay(stored, request_hash)
        if isinstance(result, IdempotencyRow):
            return self._replay(result, request_hash)
        return result

    @staticmethod
    def _replay(stored: IdempotencyRow, request_hash: str) -> Message:
        if stored.request_hash != request_hash:
            raise IdempotencyConflict(details={"idempotencyKey": stored.key})
        return Message.model_validate(stored.response)

    async def get(self, session_id: str, message_id: str) -> Message:
        async with self._db() as db:
            row = await MessageRepository(db).get(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        return to_schema(row)

    async def cancel_or_revoke(
        self, session_id: str, message_id: str, client: EngineClient | None
    ) -> Message:
        """Cancel a pending message, or revoke a sent one for everyone."""
        async with self._db() as db:
            row = await MessageRepository(db).get(session_id, message_id)
        if row is None:
            raise MessageNotFound(details={"messageId": message_id})
        if can_cancel(MessageStatus(row.status)):
            return await self._cancel(session_id, message_id)
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
        return await self.get(session_id, message_id)

    async def _cancel(self, session_id: str, message_id: str) -> Message:
        async with self._db() as db, db.begin():
            # The job before the message: the order the sender locks them in.
            job = await outbox.job_for(db, session_id, message_id)
            row = await MessageRepository(db).lock(session_id, message_id)
            if row is None:
                raise MessageNotFound(details={"messageId": message_id})
            if not can_cancel(MessageStatus(row.status)):
                raise MessageNotPending(details={"status": row.status})
            if job is not None and job.locked_until is not None and job.locked_until > utcnow():
                raise MessageNotPending(
                    "the message is being sent now", details={"status": "sending"}
                )
            if job is not None:
                job.done = True
            row.status, row.updated_at = MessageStatus.CANCELLED.value, utcnow()
        return to_schema(row)

    # Reports from engines, applied in order by the session's runtime worker.

    async def on_engine_events(self, session: SessionRow, reports: list[EngineEvent]) -> None:
        """Apply a run of engine reports (acks, messages, revokes, reactions, group
        changes) in order, in one unit of work, group-committed with other sessions'
        runs: a burst of acks costs one commit.

        A run that fails is applied again one report at a time; a report that fails
        alone is set aside (`set_aside_reports`) with its error, so it neither sinks
        the reports around it nor disappears."""
        media: dict[str, dict[str, Any]] = {}
        for report in reports:
            # Media goes to storage before the transaction (no I/O while it is open).
            if (
                isinstance(report, MessageReceived)
                and report.media is not None
                and not self._ignored(session, report.chat_id)
            ):
                media[report.id] = await self._store_inbound(session.id, report.id, report.media)
        inbound = {
            report.id: await self._prepare_inbound(session, report, media.get(report.id))
            for report in reports
            if isinstance(report, MessageReceived)
        }
        try:
            await self._reports.run(partial(self._apply_run, session, reports, inbound))
            return
        except Exception as exc:
            if len(reports) == 1:
                await self._set_aside(session, reports[0], exc)
                return
        for report in reports:
            try:
                await self._reports.run(partial(self._apply_run, session, [report], inbound))
            except Exception as exc:
                await self._set_aside(session, report, exc)

    async def _apply_run(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        inbound: dict[str, _Inbound | None],
        db: AsyncSession,
    ) -> None:
        known = await MessageRepository(db).known_ids(
            session.id, [r.id for r in reports if isinstance(r, MessageReceived)]
        )
        # The messages the run acks, locked at once in id order (as the sender locks
        # them), so that the two never wait on each other in a cycle on PostgreSQL.
        acked = sorted({r.message_id for r in reports if isinstance(r, MessageAck)})
        locked = await MessageRepository(db).lock_many(session.id, acked)
        run = _Run(known=known, locked=locked, inbound=inbound)
        events: list[Event] = []
        for report in reports:
            events += await self._apply(db, session, report, run)
        for chat_id, push_name in run.contacts.items():
            await upsert_contact(db, session.id, chat_id, push_name=push_name)
        await self._events.append(db, events)

    async def _set_aside(self, session: SessionRow, report: EngineEvent, error: Exception) -> None:
        log.error(
            "engine_report_set_aside",
            session_id=session.id,
            kind=type(report).__name__,
            error=repr(error)[:500],
        )
        row = SetAsideReportRow(
            session_id=session.id,
            kind=type(report).__name__,
            report=report_record(report),
            error=repr(error)[:2000],
            created_at=utcnow(),
        )
        try:
            async with self._db() as db, db.begin():
                db.add(row)
        except Exception:
            log.exception("engine_report_lost", session_id=session.id)

    async def _apply(
        self,
        db: AsyncSession,
        session: SessionRow,
        report: EngineEvent,
        run: _Run,
    ) -> list[Event]:
        match report:
            case MessageAck():
                return await self._ack(db, session, report, run)
            case MessageReceived():
                return await self._received(db, session, report, run.inbound.get(report.id), run)
            case MessageRevoked():
                return await self._revoked(db, session, report)
            case ReactionReceived():
                target = await MessageRepository(db).find(session.id, report.message_id)
                data: dict[str, Any] = {
                    "messageId": target.id if target is not None else report.message_id,
                    "chatId": report.chat_id,
                    "from": report.sender,
                    "emoji": report.emoji,
                }
                return self._event(session, MESSAGE_REACTION, data, report.chat_id)
            case GroupUpdated():
                update = {
                    "groupId": report.group_id,
                    "action": report.action,
                    "participants": report.participants,
                    "by": report.by,
                }
                return self._event(session, GROUP_UPDATE, update, report.group_id)
            case ContactsSeen(names=names):
                for chat_id, name in names.items():
                    if chat_kind(chat_id) == "user":
                        run.contact(chat_id, name)
        return []

    def _ignored(self, session: SessionRow, chat_id: str) -> bool:
        flag = _IGNORE_FLAGS.get(chat_kind(chat_id))
        return bool(flag and ((session.config or {}).get("ignore") or {}).get(flag))

    def _event(
        self, session: SessionRow, name: str, data: dict[str, Any], chat_id: str
    ) -> list[Event]:
        return [] if self._ignored(session, chat_id) else [session_event(session, name, data)]

    async def _revoked(
        self, db: AsyncSession, session: SessionRow, revoked: MessageRevoked
    ) -> list[Event]:
        if self._ignored(session, revoked.chat_id):
            return []
        row = await MessageRepository(db).find(session.id, revoked.id)
        if row is not None:
            if row.revoked_at is not None:
                return []
            row.revoked_at = row.updated_at = utcnow()
        data = {"id": row.id if row is not None else revoked.id, "chatId": revoked.chat_id}
        return [session_event(session, MESSAGE_REVOKED, data)]

    async def _ack(
        self, db: AsyncSession, session: SessionRow, ack: MessageAck, run: _Run
    ) -> list[Event]:
        """Record the changes the ack implies, each with its event, under the row lock
        (the send worker records `sent` in a transaction of its own and may come later).

        An ack for a message still `pending` means the engine has taken it: `sent` is
        recorded first, as the sender would record it (`message.sent`, the message as
        sent), and the sender then logs nothing for it."""
        target = parse(ack.status)
        if target is None:
            return []
        row = run.locked.get(ack.message_id)
        if row is None:  # named by the engine's id, or not locked with the run
            row = await MessageRepository(db).lock(session.id, ack.message_id)
        if row is None:
            return []
        events: list[Event] = []
        now = utcnow()
        for step in path(MessageStatus(row.status), target):
            row.status, row.updated_at = step.value, now
            if step == MessageStatus.SENT:
                events.append(session_event(session, MESSAGE_SENT, await self.event_data(row)))
            else:
                data = {"id": row.id, "chatId": row.chat_id, "status": step.value}
                events.append(session_event(session, MESSAGE_ACK, data))
        return events

    async def _received(
        self,
        db: AsyncSession,
        session: SessionRow,
        received: MessageReceived,
        prepared: _Inbound | None,
        run: _Run,
    ) -> list[Event]:
        if prepared is None:  # an ignored chat
            return []
        if received.id in run.known:
            return []  # already stored: an engine may report a message twice (or sync it)
        run.known.add(received.id)
        MessageRepository(db).add(prepared.row())
        if received.sender and chat_kind(received.chat_id) == "user" and not received.from_me:
            run.contact(received.sender, received.push_name)
        return [] if prepared.event is None else [prepared.event]

    async def _prepare_inbound(
        self, session: SessionRow, received: MessageReceived, media: dict[str, Any] | None
    ) -> _Inbound | None:
        """The row and event of an inbound message, made before the transaction (no
        Python work while the writer is held); None for a chat the session ignores."""
        if self._ignored(session, received.chat_id):
            return None
        content = dict(received.content)
        if media is not None:
            content["media"] = media
        now = utcnow()
        row = MessageRow(
            session_id=session.id,
            id=received.id,
            chat_id=received.chat_id,
            from_me=received.from_me,
            sender=received.sender,
            type=received.type,
            content=content,
            media_key=(content.get("media") or {}).get("key"),
            status=(MessageStatus.SENT if received.from_me else MessageStatus.RECEIVED).value,
            timestamp=received.timestamp,
            # Synced history does not count as unread: WhatsApp does not say what was.
            read_at=now if received.history else None,
            created_at=now,
            updated_at=now,
        )
        values = {key: getattr(row, key) for key in _MESSAGE_COLUMNS}
        if received.history:
            return _Inbound(values, None)  # synced history is stored, not announced
        name = MESSAGE_SENT if received.from_me else MESSAGE_RECEIVED
        return _Inbound(values, session_event(session, name, await self.event_data(row)))

    async def _store_inbound(
        self, session_id: str, message_id: str, media: InboundMedia
    ) -> dict[str, Any]:
        """Put inbound media in our storage under our own key; the content's `media`."""
        key = media_key(session_id, safe_id(message_id), extension_for(media.mimetype))
        if media.data is not None:
            await self._storage.put(key, media.data, media.mimetype)
        elif media.source_key is not None:
            await self._storage.copy(media.source_key, key)
        stored: dict[str, Any] = {"key": key, "mimetype": media.mimetype, "size": media.size}
        if media.filename:
            stored["filename"] = media.filename
        return stored
