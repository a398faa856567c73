"""Supervising sessions: engine clients, their reports, reconnects with backoff, restore.

Why a module of its own: this is the part that runs engines and holds what only lives
in memory (the client of each running session, its queue of reports, whether it is
ready, its reconnect timer). What gets written about a session when it moves is
`records.py`'s business; this module only says what happened, each move in its own
unit of work, and publishes nothing itself (the commit does).

Each running session has one engine client and one task that applies the client's
events in order. Engines only enqueue events, so an engine that reports while we
are inside `connect()` never waits on a lock we hold.

A session that stops (through the API, a restart, a logout, the server's shutdown) or
ends (logged out, failed) writes the reports its engine handed over before it is gone
(`_drain`): for whatsmeow, Baileys and whatsapp-web.js they were acknowledged to
WhatsApp already, and the queue is their only copy. A fence (the lease lost: another
instance owns the session now) drops them, as do a delete (the messages go with the
session) and a drain past its bound (logged with its count).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster.leases import LeaseLost
from openwa.db.engine import on_commit, transient
from openwa.db.models import SessionRow
from openwa.engines.base import (
    Authenticated,
    CallReceived,
    ChatUpdated,
    Connected,
    ContactsSeen,
    ContactUpdated,
    Disconnected,
    Engine,
    EngineClient,
    EngineEvent,
    Failed,
    GroupUpdated,
    LoggedOut,
    MediaReader,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    QrUpdated,
    ReactionReceived,
    ReadBySelf,
    SessionContext,
)
from openwa.engines.flow import Patience, ReportFlow, ReportsPutOff, Retries
from openwa.engines.registry import EngineRegistry
from openwa.errors import OwnedElsewhere, SessionLimitReached
from openwa.events.log import EventLog
from openwa.kit.backoff import backoff_s
from openwa.kit.signal import Signal
from openwa.kit.wanted_lock import WantedLock
from openwa.sessions.auth_store import DatabaseAuthStore
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.records import SessionRecords

if TYPE_CHECKING:
    from openwa.cluster.ownership import Ownership

log = structlog.get_logger(__name__)

# A connection that stays up this long starts the reconnect backoff over when it drops.
# One that drops sooner (kicked right after each login: a replaced stream, a server
# that refuses the account) goes on from where the backoff was: it used to start over
# at every connect, and such a session logged in every second or two for ever, which
# WhatsApp penalises.
STABLE_AFTER_S = 60.0


class MessageHandler(Protocol):
    """Applies a run of reports; the ids of the inbound messages it is done with
    (written, or set aside for a reason of their own), which the engine may then let
    go of. Raises `ReportsPutOff` when `put_off` said so while it waited out the
    database, nothing of the run written. `patience`: how long the run may still wait
    out the database, kept by the caller across calls for the same run."""

    def __call__(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        *,
        put_off: Callable[[], bool] | None = None,
        patience: Patience | None = None,
    ) -> Awaitable[Collection[str]]: ...


# Engine reports about messages, chats, groups and contacts (not about the connection),
# batched together.
_REPORTS = (
    MessageAck,
    MessageReceived,
    MessageRevoked,
    MessageEdited,
    ReactionReceived,
    PollVoted,
    ReadBySelf,
    PresenceUpdated,
    CallReceived,
    GroupUpdated,
    ChatUpdated,
    ContactsSeen,
    ContactUpdated,
)
_REPORT_BATCH = 200
# How long a stop waits, by default, for its session's queued reports to be written
# (the app passes SHUTDOWN_TIMEOUT_S): a database that keeps failing must not hold a
# stop for ever. (The stop's wait for the lock, held while a batch is written, is not
# bounded here.)
DRAIN_TIMEOUT_S = 30.0
# Connection changes whose write is tried again when the database refuses it for a
# reason of the moment (`_apply_patiently`): written again, each says the same.
_STATUS_CHANGES = (Authenticated, Connected)
STATUS_RETRY_S = 300.0
# Sessions a shutdown stops at once: their disconnects wait mostly on engine processes,
# their drains on the group writer, which batches them together.
_SHUTDOWN_STOPS_AT_ONCE = 16


@dataclass(eq=False)
class _Running:
    session_id: str
    engine: str
    client: EngineClient | None = None
    events: asyncio.Queue[EngineEvent] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    reconnect: asyncio.Task[None] | None = None
    # The reconnect is still waiting out its delay (it has not begun to connect).
    reconnect_waiting: bool = False
    attempts: int = 0
    # When the connection last came up (monotonic), while it is up: the backoff starts
    # over only after it stayed up `STABLE_AFTER_S`.
    connected_at: float | None = None
    closed: bool = False
    ready: bool = False
    # An event taken from the queue while batching that must go next, on its own.
    held: EngineEvent | None = None
    # The batch the worker took from the queue and has not applied yet. It waits for
    # the session's lock, which a stop holds: the stop's drain writes it (`_drain`).
    taken: list[EngineEvent] = field(default_factory=list)
    # How long `taken` may still wait out the database: kept while the run is put off
    # (`ReportsPutOff`), and shared by the batches of a drain.
    patience: Patience = field(default_factory=Patience)
    # Closed while `events` is over the runtime's bound (`engines.flow`).
    flow: ReportFlow = field(default_factory=ReportFlow)

    def gone(self) -> None:
        """Closed or ended: not ready, and nobody waits on its reports any more."""
        self.closed = True
        self.ready = False
        self.flow.release()

    def unapplied(self) -> list[EngineEvent]:
        """What the engine handed over and the worker has not applied (its batch, the
        event it held back, the queue), in order; taken from where it waited."""
        pending = [*self.taken, *([self.held] if self.held is not None else [])]
        self.taken, self.held = [], None
        while not self.events.empty():
            pending.append(self.events.get_nowait())
        return pending


@dataclass(frozen=True)
class ReconnectPolicy:
    base_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return backoff_s(attempt, self.base_s, self.max_s)


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
        report_queue_max: int = 10_000,
        drain_timeout_s: float | None = DRAIN_TIMEOUT_S,
        status_retry_s: float = STATUS_RETRY_S,
    ) -> None:
        """`report_queue_max`: a session's unwritten reports at which its engine is
        asked to hold back (`engines.flow`); it may go on once half are written.
        `drain_timeout_s`: how long a stop waits for its session's queued reports to be
        written (`_drain`); what is left then is logged and dropped. None: no bound of
        its own (a shutdown's own bound still ends it). `status_retry_s`: how long a
        status change the database refuses for a reason of the moment is tried again
        (`ENGINE_REPORT_RETRY_S`, as for reports)."""
        self._directory = directory
        self._status_retry_s = status_retry_s
        self._report_queue_max = report_queue_max
        self._drain_timeout_s = drain_timeout_s
        self._media = media
        self._db = db
        self._engines = engines
        self._records = SessionRecords(events)
        self._max_sessions = max_sessions
        self._reconnect = reconnect
        self._running: dict[str, _Running] = {}
        # Sessions between the room check and joining `_running` (there are awaits).
        self._starting: set[str] = set()
        self._locks: dict[str, WantedLock] = {}
        self._message_handler: MessageHandler | None = None
        self._ownership: Ownership | None = None
        # Told each session id that starts here (what was kept of it may be stale).
        self._start_listeners: list[Callable[[str], None]] = []
        # Notified whenever a session becomes ready, or may send again after being held
        # back (queued sends may go now).
        self.became_ready = Signal()

    def use_ownership(self, ownership: Ownership) -> None:
        """Leases decide which sessions run here (wired by the composition root)."""
        self._ownership = ownership
        ownership.attach(self)

    def _owns(self, session_id: str) -> bool:
        return self._ownership is None or self._ownership.holds(session_id)

    def add_start_listener(self, listener: Callable[[str], None]) -> None:
        self._start_listeners.append(listener)

    def session_dropped(self, session_id: str) -> None:
        """A deleted session's lock goes with it, on every instance (`forget` runs only
        on the one that deleted it), unless a call holds it now: one lock per session
        ever seen would otherwise stay for the process's life."""
        lock = self._locks.get(session_id)
        # Not while held, nor while a caller is being handed it (released, not yet
        # taken: `locked()` is False then, and a new lock would make two holders).
        if lock is not None and not lock.locked() and not lock.wanted():
            del self._locks[session_id]

    def set_message_handler(self, handler: MessageHandler) -> None:
        """Where message reports (acks, inbound) go; wired by the composition root."""
        self._message_handler = handler

    # Queries about what runs here.

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def reports_queued(self) -> int:
        """Engine reports waiting to be written, over the sessions running here (each
        session's queue is bounded: `engines.flow`)."""
        return sum(running.events.qsize() for running in self._running.values())

    @property
    def held_back(self) -> int:
        """Sessions running here whose engine is asked to hold back (`engines.flow`)."""
        return sum(1 for running in self._running.values() if not running.flow.is_open)

    def is_running(self, session_id: str) -> bool:
        return session_id in self._running

    def ready_sessions(self) -> set[str]:
        """Connected sessions whose lease is surely ours: only these may be used."""
        return {sid for sid, running in self._running.items() if running.ready and self._owns(sid)}

    def sending_sessions(self) -> set[str]:
        """Ready sessions that may send now: not those held back (`engines.flow`), whose
        engine may have stopped reading from WhatsApp (a send's answer would not come),
        and whose reports, acks of their sends among them, are behind already."""
        return {sid for sid in self.ready_sessions() if self._running[sid].flow.is_open}

    def client(self, session_id: str) -> EngineClient | None:
        running = self._running.get(session_id)
        if running is None or not self._owns(session_id):
            return None
        return running.client

    def raise_no_room(self, session_id: str | None = None) -> NoReturn:
        """No room here: the session goes to an instance that has some, if one does."""
        if self._ownership is not None:
            elsewhere = self._ownership.room_elsewhere(session_id)
            if elsewhere is not None:
                raise elsewhere
        raise SessionLimitReached(
            details={"maxSessions": self._max_sessions, "running": len(self._running)}
        )

    def require_here(self, session_id: str) -> None:
        """A live engine call for a session another instance runs goes there."""
        elsewhere = self.owner_elsewhere(session_id)
        if elsewhere is not None:
            raise elsewhere

    def owner_elsewhere(self, session_id: str) -> OwnedElsewhere | None:
        """When the session runs on another live instance: the error that sends a live
        call there (the HTTP edge forwards it)."""
        if session_id in self._running or self._ownership is None:
            return None
        owner = self._ownership.owner_of(session_id)
        if owner is None:
            return None
        return OwnedElsewhere(details={"instance": owner.id}, url=owner.url)

    def has_room(self) -> bool:
        return len(self._running) + len(self._starting) < self._max_sessions

    def _check_engine_room(self, engine: Engine) -> None:
        """An engine's own cap (WEBJS_MAX_SESSIONS: a browser per session)."""
        cap = engine.max_sessions
        if cap is None:
            return
        running = sum(1 for r in self._running.values() if r.engine == engine.name)
        if running >= cap:
            raise SessionLimitReached(
                f"{cap} {engine.name} sessions are running, the most this instance takes",
                details={"engine": engine.name, "maxSessions": cap, "running": running},
            )

    def lock(self, session_id: str) -> WantedLock:
        return self._locks.setdefault(session_id, WantedLock())

    def auth_store(
        self, session_id: str, engine: str, *, epoch: int | None = None
    ) -> DatabaseAuthStore:
        """`epoch`: the store of a client started under that lease epoch, whose writes
        need it still to be this instance's (a stopped session's store, used by a
        logout, needs none)."""
        fence = (
            functools.partial(self._ownership.confirm, session_id=session_id, epoch=epoch)
            if epoch is not None and self._ownership is not None
            else None
        )
        return DatabaseAuthStore(self._db, session_id, engine, fence)

    # Lifecycle. Callers hold `lock(session_id)`.

    async def start(self, session_id: str, reason: str) -> None:
        if session_id in self._running:
            return
        if not self.has_room():
            self.raise_no_room(session_id)
        known = self._directory.get(session_id)
        if known is not None:
            self._check_engine_room(self._engines.get(known.engine))
        self._starting.add(session_id)
        try:
            epoch = 0
            if self._ownership is not None:
                epoch = await self._ownership.acquire(session_id)
            try:
                async with self._db() as db, db.begin():
                    row = await self._records.starting(db, session_id, reason)
            except BaseException:
                await self._release(session_id)
                raise
            for listener in self._start_listeners:
                listener(session_id)
            engine = self._engines.get(row.engine)
            running = _Running(session_id=session_id, engine=row.engine)

            async def emit(event: EngineEvent) -> None:
                running.events.put_nowait(event)
                if running.events.qsize() >= self._report_queue_max and not running.closed:
                    running.flow.set_open(False)

            running.client = engine.client(
                SessionContext(
                    session_id=session_id,
                    auth=self.auth_store(session_id, row.engine, epoch=epoch),
                    emit=emit,
                    config=dict(row.config or {}),
                    media=self._media,
                    instance=self._ownership.instance_id if self._ownership else "",
                    epoch=epoch,
                    flow=running.flow,
                )
            )
            running.worker = asyncio.create_task(self._apply_events(running))
            self._running[session_id] = running
        finally:
            self._starting.discard(session_id)
        await self._connect(running)

    async def stop(
        self,
        session_id: str,
        reason: str,
        *,
        keep_running: bool = False,
        keep_reports: bool = True,
    ) -> None:
        """Close the connection, then write the reports its engine handed over
        (`_drain`); `keep_running` keeps `should_run` (server shutdown); `keep_reports`
        False drops them instead (the session is being deleted)."""
        running = self._running.pop(session_id, None)
        if running is None and (elsewhere := self.owner_elsewhere(session_id)) is not None:
            raise elsewhere
        if running is not None:
            await self._close(running, drain=keep_reports)
        if self._directory.get(session_id) is None:
            return
        if self._owns(session_id) or running is None:
            async with self._db() as db, db.begin():
                await self._records.stopped(db, session_id, reason, keep_running=keep_running)
        await self._release(session_id)

    async def logout(self, session_id: str, reason: str, *, keep_reports: bool = True) -> None:
        running = self._running.get(session_id)
        if running is None and (elsewhere := self.owner_elsewhere(session_id)) is not None:
            raise elsewhere
        if running is not None and running.client is not None:
            await running.client.logout()
        else:
            row = self._directory.get(session_id)
            if row is not None:
                await self._forget_auth(session_id, row.engine)
        await self.stop(session_id, reason, keep_reports=keep_reports)
        async with self._db() as db, db.begin():
            await self._records.signed_out(db, session_id)

    async def forget(self, session_id: str) -> None:
        """Drop what the runtime keeps for a deleted session."""
        running = self._running.pop(session_id, None)
        if running is not None:
            await self._close(running, drain=False)
        self._locks.pop(session_id, None)
        await self._release(session_id)  # its lease went with its row

    async def take_over(self, session_id: str, reason: str) -> None:
        """Start a session nobody runs (its owner died or let go), under its lock."""
        async with self.lock(session_id):
            await self.start(session_id, reason)

    async def fence(self, session_id: str) -> None:
        """The lease is lost: drop the connection and write nothing (the row is the new
        owner's to write now).

        The reports still queued are dropped too: this instance was paused or cut off
        (it may not reach the database at all), and the ownership loop that fences must
        not wait on writes while other leases need renewing. The mock network's inbox
        keeps every message from another session until it is confirmed stored, and
        hands it to the new owner's connection; whatsmeow, Baileys and whatsapp-web.js
        acknowledged theirs to WhatsApp already, which does not hand them over again:
        those are lost (logged with their count, `engine_reports_dropped`)."""
        running = self._running.pop(session_id, None)
        if running is not None:
            log.warning("session_fenced", session_id=session_id)
            await self._close(running, drain=False)

    async def _lost(self, session_id: str) -> None:
        log.warning("status_not_written_lease_lost", session_id=session_id)
        if self._ownership is not None:
            await self._ownership.drop(session_id)
        else:
            await self.fence(session_id)

    async def _release(self, session_id: str) -> None:
        if self._ownership is not None:
            try:
                await self._ownership.release(session_id)
            except Exception:
                log.exception("lease_release_failed", session_id=session_id)

    async def restore(self) -> None:
        """Start every session that was running when the server stopped."""
        for session_id in self._directory.to_restore():
            async with self.lock(session_id):
                try:
                    await self.start(session_id, "restored after server start")
                except SessionLimitReached:
                    async with self._db() as db, db.begin():
                        await self._records.no_room_at_restore(db, session_id)
                except Exception as exc:  # one bad session must not stop the others
                    log.exception("restore_failed", session_id=session_id)
                    async with self._db() as db, db.begin():
                        await self._records.restore_failed(db, session_id, str(exc))

    async def shutdown(self) -> None:
        """Stop every session here, several at once: one after another, a slow
        disconnect or drain of each used up the shutdown's bound for those after it,
        whose queued reports were then lost."""
        gate = asyncio.Semaphore(_SHUTDOWN_STOPS_AT_ONCE)

        async def stop(session_id: str) -> None:
            async with gate, self.lock(session_id):
                with contextlib.suppress(Exception):
                    await self.stop(session_id, "server shutdown", keep_running=True)

        await asyncio.gather(*(stop(session_id) for session_id in list(self._running)))

    # Internals.

    async def _connect(self, running: _Running) -> None:
        assert running.client is not None
        try:
            await running.client.connect()
        except Exception as exc:
            log.warning("connect_failed", session_id=running.session_id, error=str(exc))
            running.events.put_nowait(Disconnected(f"connect failed: {exc}"))

    async def _close(self, running: _Running, *, drain: bool) -> None:
        """Stop the session's tasks, disconnect its client (it hands nothing more over),
        then write what it handed over (`drain`) or drop it.

        A caller that drains holds the session's lock: the worker is then not applying
        a batch but waiting for the lock (its batch in `taken`) or for the queue, and
        is cancelled losing nothing. A fence holds no lock and drains nothing."""
        running.gone()
        for task in (running.reconnect, running.worker):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if running.client is not None:
            with contextlib.suppress(Exception):
                await running.client.disconnect()
        if drain:
            await self._drain(running)
            return
        dropped = sum(isinstance(event, _REPORTS) for event in running.unapplied())
        if dropped:
            log.warning("engine_reports_dropped", session_id=running.session_id, count=dropped)

    async def _drain(self, running: _Running) -> None:
        """Write the reports the session's engine handed over and the worker has not
        applied, through the worker's own path (`_apply_reports`, in batches), once the
        session is closed and its client disconnected; under the session's lock, with
        the worker stopped (or from the worker itself: `_end`).

        Status changes among them are not applied (the stop or the end writes the
        session's status). Bounded by `drain_timeout_s`: what is left then, or when the
        drain itself is cancelled (the server's shutdown ran out of time), is logged
        with its count and dropped."""
        sid = running.session_id
        pending: list[EngineEvent] = [e for e in running.unapplied() if isinstance(e, _REPORTS)]
        # One patience for the whole drain (the batch the worker had put off goes on
        # with its own): a database away costs it once, not once per batch.
        patience = running.patience
        applied = 0
        try:
            async with asyncio.timeout(self._drain_timeout_s):
                while pending:
                    batch = pending[:_REPORT_BATCH]
                    try:
                        await self._apply_reports(running, batch, patience=patience)
                    except Exception:
                        log.exception("engine_event_failed", session_id=sid)
                    del pending[: len(batch)]
                    applied += len(batch)
                    # What was on its way while the client disconnected.
                    pending += [e for e in running.unapplied() if isinstance(e, _REPORTS)]
        except TimeoutError:
            log.error(
                "engine_reports_not_written",
                session_id=sid,
                applied=applied,
                left=len(pending),
                bound_s=self._drain_timeout_s,
            )
            return
        except asyncio.CancelledError:
            log.error(
                "engine_reports_not_written", session_id=sid, applied=applied, left=len(pending)
            )
            raise
        if applied:
            log.info("engine_reports_drained", session_id=sid, count=applied)

    async def _apply_events(self, running: _Running) -> None:
        while True:
            if running.taken:
                batch = running.taken  # put off (`_apply_reports`): first again
            elif running.held is not None:
                batch, running.held = [running.held], None
            else:
                batch = [await running.events.get()]
            # Reports waiting right behind a report are applied with it, in one
            # transaction; a status change always goes alone, in its order.
            while (
                batch is not running.taken
                and isinstance(batch[0], _REPORTS)
                and len(batch) < _REPORT_BATCH
                and not running.events.empty()
            ):
                following = running.events.get_nowait()
                if not isinstance(following, _REPORTS):
                    running.held = following
                    break
                batch.append(following)
            # Kept where a stop's drain finds it: the stop holds the lock awaited here.
            running.taken = batch
            lock = self.lock(running.session_id)
            async with lock:
                if running.closed:
                    return
                try:
                    if isinstance(batch[0], _REPORTS):
                        await self._apply_reports(
                            running, batch, put_off=lock.wanted, patience=running.patience
                        )
                    else:
                        await self._apply_patiently(running, batch[0], lock.wanted)
                except ReportsPutOff:
                    # Whoever waits for the lock goes first; the batch stays taken (a
                    # stop's drain writes it) and is tried again after them.
                    continue
                except Exception:
                    log.exception("engine_event_failed", session_id=running.session_id)
                running.taken = []
                running.patience = Patience()
                if running.closed:
                    return
            if not running.flow.is_open and running.events.qsize() <= self._report_queue_max // 2:
                running.flow.set_open(True)
                self.became_ready.notify()  # its queued sends may go again

    async def _apply_reports(
        self,
        running: _Running,
        reports: list[EngineEvent],
        *,
        put_off: Callable[[], bool] | None = None,
        patience: Patience | None = None,
    ) -> None:
        """Write a run of reports; the engine is told which inbound messages are stored
        (only those: one the core could not write for a reason of the moment is handed
        over again by an engine that can, the mock's inbox)."""
        row = self._directory.get(running.session_id)
        if row is None or self._message_handler is None:
            return
        done = await self._message_handler(row, reports, put_off=put_off, patience=patience)
        received = [r.id for r in reports if isinstance(r, MessageReceived) and r.id in done]
        if received and running.client is not None:
            await running.client.stored(received)

    @contextlib.asynccontextmanager
    async def _status_unit(self, session_id: str) -> AsyncIterator[AsyncSession]:
        """A unit of work for a status write, fenced by the lease: a stale owner (paused
        past its lease, cut off) never writes over the new owner's row.

        The lease is confirmed last, just before the commit: its share lock holds off a
        takeover only from then on, and this instance's own renewals too (an UPDATE of
        the same rows). Taken first, it was held while the write waited for the event
        log's counter row, seconds under load; renewals of every session queued behind
        it, the leases lapsed, and the sessions thrashed between instances (found by
        tests/cluster/test_cluster.py)."""
        async with self._db() as db, db.begin():
            yield db
            if self._ownership is not None:
                await self._ownership.confirm(db, session_id)

    async def _apply_patiently(
        self, running: _Running, event: EngineEvent, wanted: Callable[[], bool]
    ) -> None:
        """`_apply`, tried again while the database refuses it for a reason of the
        moment (a restart, a failover, a busy spell), for `status_retry_s` over all its
        tries. Whoever waits for the session's lock meanwhile (a stop, a config change,
        a reconnect) goes first: the change is put off (`ReportsPutOff`, kept where a
        stop's drain skips it) and tried again after them. A link's or a connection's
        change that failed once used to be dropped: a session connected stayed
        `authenticated` (not ready, its sends held) until its next disconnect, days
        maybe. Only those two are tried again: a QR is replaced within seconds, and a
        disconnect is followed by a reconnect, whose own writes set the status."""
        retries = Retries(
            running.session_id,
            self._status_retry_s,
            lambda: running.closed or wanted(),
            running.patience,
            event="session_status_retried",
        )
        while True:
            try:
                await self._apply(running, event)
                return
            except Exception as exc:
                if not (transient(exc) and isinstance(event, _STATUS_CHANGES)) or running.closed:
                    raise
                if not await retries.pause(exc, status=type(event).__name__):
                    raise

    async def _apply(self, running: _Running, event: EngineEvent) -> None:
        sid = running.session_id
        if not self._owns(sid):
            # A stale owner (paused past its lease) writes no status over the new
            # owner's; the ownership loop drops the session next.
            log.warning("status_not_written_without_lease", session_id=sid)
            return
        try:
            await self._apply_status(running, event)
        except LeaseLost:
            await self._lost(sid)

    async def _apply_status(self, running: _Running, event: EngineEvent) -> None:
        sid = running.session_id
        match event:
            case QrUpdated(qr=qr):
                async with self._status_unit(sid) as db:
                    await self._records.qr_shown(db, sid, qr)
            case Authenticated(phone_number=phone, push_name=push):
                async with self._status_unit(sid) as db:
                    await self._records.linked(db, sid, phone, push)
            case Connected():
                # Since it came up: a second Connected without a drop between (Baileys'
                # restart after a scan) does not make it younger.
                if running.connected_at is None:
                    running.connected_at = time.monotonic()
                # Ready here before `ready` is committed: whoever reads `ready` (from the
                # session directory, at once) may use the session at once.
                running.ready = True
                try:
                    async with self._status_unit(sid) as db:
                        await self._records.ready(db, sid)
                        # Queued sends may go once `ready` is committed.
                        on_commit(db, self.became_ready.notify)
                except BaseException:
                    running.ready = False
                    raise
                if running.reconnect_waiting and running.reconnect is not None:
                    # Back by itself: a reconnect still waiting would take it down again.
                    # Its flags are cleared here: a task cancelled before it ever ran
                    # never reaches its own `finally`.
                    running.reconnect.cancel()
                    running.reconnect, running.reconnect_waiting = None, False
            case Disconnected(reason=reason):
                running.ready = False
                try:
                    async with self._status_unit(sid) as db:
                        await self._records.disconnected(db, sid, reason)
                finally:
                    # Reconnect even when the write failed: the connection is gone
                    # either way, and the reconnect's own writes (`initializing`, then
                    # `ready`) bring the row back in line with the runtime.
                    self._schedule_reconnect(running)
            case LoggedOut(reason=reason):
                await self._end(running, reason, clear_auth=True)
            case Failed(reason=reason):
                await self._end(running, reason, clear_auth=False)

    async def _end(self, running: _Running, reason: str, *, clear_auth: bool) -> None:
        sid = running.session_id
        self._running.pop(sid, None)
        running.gone()
        if running.reconnect is not None:
            running.reconnect.cancel()
        if running.client is not None:
            with contextlib.suppress(Exception):
                await running.client.disconnect()
        # What it reported before it ended is written as a stop writes it.
        await self._drain(running)
        if clear_auth:
            await self._forget_auth(sid, running.engine)
        async with self._status_unit(sid) as db:
            await self._records.ended(db, sid, reason, logged_out=clear_auth)
        await self._release(sid)

    async def _forget_auth(self, session_id: str, engine_name: str) -> None:
        """The device is gone: the engine drops its own state, then ours goes."""
        store = self.auth_store(session_id, engine_name)
        await self._engines.get(engine_name).forget(session_id, await store.load())
        await store.clear()

    def _schedule_reconnect(self, running: _Running) -> None:
        if running.reconnect_waiting and running.reconnect is not None:
            # A reconnect already waits its turn: this loss is the one it will mend (a
            # second Disconnected before it connected). Each used to get a reconnect of
            # its own, and the session went through a cycle of connecting for each
            # (five `mock/disconnect` calls in a row: five cycles over 17 s).
            return
        up_since, running.connected_at = running.connected_at, None
        if up_since is not None and time.monotonic() - up_since >= STABLE_AFTER_S:
            running.attempts = 0  # it stayed up: this loss is a fresh one
        delay = self._reconnect.delay(running.attempts)
        running.attempts += 1

        async def reconnect() -> None:
            try:
                await asyncio.sleep(delay)
            finally:
                running.reconnect_waiting = False
            async with self.lock(running.session_id):
                if running.closed:
                    return
                try:
                    async with self._status_unit(running.session_id) as db:
                        await self._records.reconnecting(db, running.session_id, running.attempts)
                except LeaseLost:
                    await self._lost(running.session_id)
                    return
                except Exception as exc:
                    if not transient(exc):
                        raise
                    # Tried again after the next pause: the status machine takes the
                    # connection's own writes only after this one. A failed write used
                    # to end the reconnect, and the session stayed `disconnected`
                    # until restarted by hand.
                    log.warning(
                        "session_reconnect_put_off",
                        session_id=running.session_id,
                        error=repr(exc)[:500],
                    )
                    self._schedule_reconnect(running)
                    return
            await self._connect(running)

        running.reconnect_waiting = True
        running.reconnect = asyncio.create_task(reconnect())
