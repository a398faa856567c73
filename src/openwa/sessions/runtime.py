"""The running side of sessions: engine clients, their events, reconnects, restore.

Each running session has one engine client and one task that applies the client's
events in order. Engines only enqueue events, so an engine that reports while we
are inside `connect()` never waits on a lock we hold. Every status change is
written to the database first and published second, so a subscriber never sees a
status that a reader of the API cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import SessionRow
from openwa.engines.base import (
    Authenticated,
    Connected,
    ContactsSeen,
    Disconnected,
    EngineClient,
    EngineEvent,
    Failed,
    GroupUpdated,
    LoggedOut,
    MediaReader,
    MessageAck,
    MessageReceived,
    MessageRevoked,
    QrUpdated,
    ReactionReceived,
    SessionContext,
)
from openwa.engines.registry import EngineRegistry
from openwa.errors import SessionLimitReached, SessionNotFound
from openwa.events.log import EventLog
from openwa.events.types import SESSION_QR, SESSION_STATUS, Event
from openwa.kit.backoff import backoff_s
from openwa.kit.clock import iso, utcnow
from openwa.kit.signal import Signal
from openwa.sessions.auth_store import DatabaseAuthStore
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.qr import qr_data_url
from openwa.sessions.repository import SessionRepository
from openwa.sessions.status import HISTORY_LENGTH, Status, can_move

log = structlog.get_logger(__name__)

MessageHandler = Callable[[SessionRow, list[EngineEvent]], Awaitable[None]]
# Engine reports about messages and groups (not about the connection), batched together.
_REPORTS = (
    MessageAck,
    MessageReceived,
    MessageRevoked,
    ReactionReceived,
    GroupUpdated,
    ContactsSeen,
)
_REPORT_BATCH = 200


@dataclass(eq=False)
class _Running:
    session_id: str
    engine: str
    client: EngineClient | None = None
    events: asyncio.Queue[EngineEvent] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    reconnect: asyncio.Task[None] | None = None
    attempts: int = 0
    closed: bool = False
    ready: bool = False
    # An event taken from the queue while batching that must go next, on its own.
    held: EngineEvent | None = None


@dataclass(frozen=True)
class ReconnectPolicy:
    base_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return backoff_s(attempt, self.base_s, self.max_s)


def session_metadata(row: SessionRow) -> dict[str, str]:
    metadata = (row.config or {}).get("metadata") or {}
    return {str(k): str(v) for k, v in metadata.items()}


def session_event(row: SessionRow, name: str, data: dict[str, Any]) -> Event:
    """An event of `row`'s session, carrying its engine and `metadata`."""
    return Event(
        event=name, session_id=row.id, engine=row.engine, data=data, metadata=session_metadata(row)
    )


class SessionRuntime:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        engines: EngineRegistry,
        events: EventLog,
        max_sessions: int,
        reconnect: ReconnectPolicy,
        directory: SessionDirectory,
        media: MediaReader | None = None,
    ) -> None:
        self._directory = directory
        self._media = media
        self._db = db
        self._engines = engines
        self._events = events
        self._max_sessions = max_sessions
        self._reconnect = reconnect
        self._running: dict[str, _Running] = {}
        # Sessions between the room check and joining `_running` (there are awaits).
        self._starting: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._message_handler: MessageHandler | None = None
        # Notified whenever a session becomes ready (queued sends may go now).
        self.became_ready = Signal()

    def set_message_handler(self, handler: MessageHandler) -> None:
        """Where message reports (acks, inbound) go; wired by the composition root."""
        self._message_handler = handler

    # Queries about what runs here.

    @property
    def running_count(self) -> int:
        return len(self._running)

    def is_running(self, session_id: str) -> bool:
        return session_id in self._running

    def ready_sessions(self) -> set[str]:
        return {sid for sid, running in self._running.items() if running.ready}

    def client(self, session_id: str) -> EngineClient | None:
        running = self._running.get(session_id)
        return running.client if running else None

    def has_room(self) -> bool:
        return len(self._running) + len(self._starting) < self._max_sessions

    def lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    def auth_store(self, session_id: str, engine: str) -> DatabaseAuthStore:
        return DatabaseAuthStore(self._db, session_id, engine)

    # Lifecycle. Callers hold `lock(session_id)`.

    async def start(self, session_id: str, reason: str) -> None:
        if session_id in self._running:
            return
        if not self.has_room():
            raise SessionLimitReached(
                details={"maxSessions": self._max_sessions, "running": len(self._running)}
            )
        self._starting.add(session_id)
        try:
            row = await self._transition(
                session_id, Status.INITIALIZING, reason, should_run=True, last_error=None
            )
            running = _Running(session_id=session_id, engine=row.engine)
            engine = self._engines.get(row.engine)

            async def emit(event: EngineEvent) -> None:
                running.events.put_nowait(event)

            running.client = engine.client(
                SessionContext(
                    session_id=session_id,
                    auth=self.auth_store(session_id, row.engine),
                    emit=emit,
                    config=dict(row.config or {}),
                    media=self._media,
                )
            )
            running.worker = asyncio.create_task(self._apply_events(running))
            self._running[session_id] = running
        finally:
            self._starting.discard(session_id)
        await self._connect(running)

    async def stop(self, session_id: str, reason: str, *, keep_running: bool = False) -> None:
        """Close the connection; `keep_running` keeps `should_run` (server shutdown)."""
        running = self._running.pop(session_id, None)
        if running is not None:
            await self._close(running)
        row = await self._load(session_id)
        if row is None:
            return
        if Status(row.status) not in (Status.STOPPED, Status.CREATED):
            await self._transition(session_id, Status.STOPPED, reason, should_run=keep_running)
        elif not keep_running and row.should_run:
            await self._update(session_id, should_run=False)

    async def logout(self, session_id: str, reason: str) -> None:
        running = self._running.get(session_id)
        if running is not None and running.client is not None:
            await running.client.logout()
        else:
            row = await self._load(session_id)
            if row is not None:
                await self._forget_auth(session_id, row.engine)
        await self.stop(session_id, reason)
        await self._update(session_id, phone_number=None, push_name=None, qr=None)

    async def forget(self, session_id: str) -> None:
        """Drop what the runtime keeps for a deleted session."""
        running = self._running.pop(session_id, None)
        if running is not None:
            await self._close(running)
        self._locks.pop(session_id, None)

    async def restore(self) -> None:
        """Start every session that was running when the server stopped."""
        async with self._db() as db:
            rows = await SessionRepository(db).to_restore()
        for row in rows:
            async with self.lock(row.id):
                try:
                    await self.start(row.id, "restored after server start")
                except SessionLimitReached:
                    await self._transition(
                        row.id,
                        Status.FAILED,
                        "MAX_SESSIONS reached on restore",
                        should_run=False,
                        last_error="SESSION_LIMIT_REACHED: no room on this instance at start",
                    )
                except Exception as exc:  # one bad session must not stop the others
                    log.exception("restore_failed", session_id=row.id)
                    await self._transition(
                        row.id, Status.FAILED, "restore failed", last_error=str(exc)
                    )

    async def shutdown(self) -> None:
        for session_id in list(self._running):
            async with self.lock(session_id):
                with contextlib.suppress(Exception):
                    await self.stop(session_id, "server shutdown", keep_running=True)

    # Internals.

    async def _connect(self, running: _Running) -> None:
        assert running.client is not None
        try:
            await running.client.connect()
        except Exception as exc:
            log.warning("connect_failed", session_id=running.session_id, error=str(exc))
            running.events.put_nowait(Disconnected(f"connect failed: {exc}"))

    async def _close(self, running: _Running) -> None:
        running.closed = True
        running.ready = False
        for task in (running.reconnect, running.worker):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if running.client is not None:
            with contextlib.suppress(Exception):
                await running.client.disconnect()

    async def _apply_events(self, running: _Running) -> None:
        while True:
            if running.held is not None:
                batch, running.held = [running.held], None
            else:
                batch = [await running.events.get()]
            # Reports waiting right behind a report are applied with it, in one
            # transaction; a status change always goes alone, in its order.
            while (
                isinstance(batch[0], _REPORTS)
                and len(batch) < _REPORT_BATCH
                and not running.events.empty()
            ):
                following = running.events.get_nowait()
                if not isinstance(following, _REPORTS):
                    running.held = following
                    break
                batch.append(following)
            async with self.lock(running.session_id):
                if running.closed:
                    return
                try:
                    if isinstance(batch[0], _REPORTS):
                        await self._apply_reports(running, batch)
                    else:
                        await self._apply(running, batch[0])
                except Exception:
                    log.exception("engine_event_failed", session_id=running.session_id)
                if running.closed:
                    return

    async def _apply_reports(self, running: _Running, reports: list[EngineEvent]) -> None:
        row = await self._load(running.session_id)
        if row is not None and self._message_handler is not None:
            await self._message_handler(row, reports)
        received = [r.id for r in reports if isinstance(r, MessageReceived)]
        if received and running.client is not None:
            await running.client.stored(received)

    async def _apply(self, running: _Running, event: EngineEvent) -> None:
        sid = running.session_id
        match event:
            case QrUpdated(qr=qr):
                qr_event = (SESSION_QR, {"qr": qr, "image": qr_data_url(qr)})
                await self._transition(sid, Status.QR_READY, "waiting for scan", qr_event, qr=qr)
            case Authenticated(phone_number=phone, push_name=push):
                await self._transition(
                    sid, Status.AUTHENTICATED, "linked", qr=None, phone_number=phone, push_name=push
                )
            case Connected():
                running.attempts = 0
                # Ready here before `ready` is committed: whoever reads `ready` (from the
                # session directory, at once) may use the session at once.
                running.ready = True
                try:
                    await self._transition(sid, Status.READY, "connected", last_error=None)
                except BaseException:
                    running.ready = False
                    raise
                self.became_ready.notify()
            case Disconnected(reason=reason):
                running.ready = False
                await self._transition(sid, Status.DISCONNECTED, reason, qr=None, last_error=reason)
                self._schedule_reconnect(running)
            case LoggedOut(reason=reason):
                await self._end(running, reason, clear_auth=True)
            case Failed(reason=reason):
                await self._end(running, reason, clear_auth=False)

    async def _end(self, running: _Running, reason: str, *, clear_auth: bool) -> None:
        sid = running.session_id
        self._running.pop(sid, None)
        running.closed = True
        running.ready = False
        if running.reconnect is not None:
            running.reconnect.cancel()
        if running.client is not None:
            with contextlib.suppress(Exception):
                await running.client.disconnect()
        fields: dict[str, Any] = {"should_run": False, "last_error": reason, "qr": None}
        if clear_auth:
            await self._forget_auth(sid, running.engine)
            fields.update(phone_number=None, push_name=None)
        await self._transition(sid, Status.FAILED, reason, **fields)

    async def _forget_auth(self, session_id: str, engine_name: str) -> None:
        """The device is gone: the engine drops its own state, then ours goes."""
        store = self.auth_store(session_id, engine_name)
        await self._engines.get(engine_name).forget(session_id, await store.load())
        await store.clear()

    def _schedule_reconnect(self, running: _Running) -> None:
        delay = self._reconnect.delay(running.attempts)
        running.attempts += 1

        async def reconnect() -> None:
            await asyncio.sleep(delay)
            async with self.lock(running.session_id):
                if running.closed:
                    return
                await self._transition(
                    running.session_id,
                    Status.INITIALIZING,
                    f"reconnecting (attempt {running.attempts})",
                )
            await self._connect(running)

        running.reconnect = asyncio.create_task(reconnect())

    async def _load(self, session_id: str) -> SessionRow | None:
        """The session as last committed (a read-only copy)."""
        return self._directory.get(session_id)

    async def _update(self, session_id: str, **fields: Any) -> None:
        async with self._db() as db, db.begin():
            row = await db.get(SessionRow, session_id)
            if row is None:
                return
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()

    async def _transition(
        self,
        session_id: str,
        status: Status,
        reason: str | None,
        extra_event: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> SessionRow:
        """Move to `status`, record it in `statusHistory` and log `session.status`.

        The row, its history and the events are written in one transaction.
        """
        async with self._db() as db, db.begin():
            row = await db.get(SessionRow, session_id)
            if row is None:
                raise SessionNotFound(details={"id": session_id})
            previous = Status(row.status)
            if not can_move(previous, status) and previous != status:
                log.warning("status_move_refused", session_id=session_id, frm=previous, to=status)
                return row
            now = utcnow()
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = now
            events = []
            if previous != status:
                row.status = status.value
                change = {
                    "status": status.value,
                    "previousStatus": previous.value,
                    "reason": reason,
                    "at": iso(now),
                }
                row.status_history = [*row.status_history, change][-HISTORY_LENGTH:]
                data: dict[str, Any] = {"status": status.value, "previousStatus": previous.value}
                if reason:
                    data["reason"] = reason
                events.append(session_event(row, SESSION_STATUS, data))
            if extra_event is not None:
                events.append(session_event(row, *extra_event))
            await self._events.append(db, events)
        return row
