"""The send worker: takes due jobs from the outbox and hands them to the engines.

At most one job per session is in flight (the outbox only hands out a session's head),
different sessions are sent concurrently. Engine failures are retried with
exponential backoff (the job's lease doubles as the wait), then the message fails.
A job whose session does not become ready within `SEND_READY_TIMEOUT_S` fails with
`SESSION_NOT_READY`.

A run's claim is kept alive while it is sent (`_RunLease`): a run of many sends, one by
one, may outlast any fixed lease, and a job whose lease ran out could be cancelled
(`DELETE`) or claimed again while the run still meant to send it.

A stop lets the runs in flight finish the send in hand and record what went, for up to
`stop_grace_s`; the jobs they did not try are given back as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import ColumnElement, String, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.base import table_of
from openwa.db.models import MessageRow, OutboxJobRow, SessionRow
from openwa.db.retry import again_if_deadlocked
from openwa.engines.base import (
    ENGINE_ERROR,
    SEND_OUTCOME_UNKNOWN,
    BatchSender,
    EngineClient,
    EngineEvent,
    OutgoingMessage,
    ResendsSafely,
    SendFailed,
    SendResult,
)
from openwa.engines.content import (
    Media,
    Reaction,
    Reply,
    Target,
    Text,
    UnknownContent,
    from_stored,
    reply_of,
)
from openwa.events.log import EventLog
from openwa.events.types import MESSAGE_ACK, MESSAGE_SENT, Event
from openwa.kit.background import BackgroundTask
from openwa.kit.backoff import backoff_s
from openwa.kit.clock import utcnow
from openwa.kit.signal import Signal
from openwa.messages.engine_ids import EngineIds
from openwa.messages.pacing import Pacing, SendInterval
from openwa.messages.repository import MessageRepository
from openwa.messages.service import MessageService
from openwa.messages.status import MessageStatus, path
from openwa.messages.wire import ack_data
from openwa.queue import outbox
from openwa.queue.claims import release_all
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.records import session_event
from openwa.sessions.runtime import SessionRuntime

log = structlog.get_logger(__name__)

_JOBS = table_of(OutboxJobRow)

ReportSink = Callable[[SessionRow, list[EngineEvent]], Awaitable[None]]

_BATCH = 64
_SWEEP_EVERY_S = 5.0
# Tries at writing a run's outcomes when PostgreSQL rolls them back to break a deadlock
# (instances writing the event log at once).
_RECORD_ATTEMPTS = 4
_SENT = [MessageStatus.SENT]
_IN_DOUBT = "a send in progress was cut short (crash or stop); it may have gone out, so it is not sent again"
# How long a stop waits for the runs in flight to finish the send in hand and record
# what went, before it cuts them short (a third of SHUTDOWN_TIMEOUT_S at most: app.py).
STOP_GRACE_S = 10.0


@dataclass(eq=False)
class _RunLease:
    """The lease of a run being sent, kept alive from a third of the lease on: renewed
    every third of it for the jobs this worker still holds (`SendWorker._renew`).
    `until`: when it runs out by the event loop's clock, as last written."""

    job_ids: list[int]
    until: float
    timer: asyncio.TimerHandle | None = None
    renewing: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class SendWorker:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        runtime: SessionRuntime,
        events: EventLog,
        queued: Signal,
        messages: MessageService,
        *,
        worker_id: str,
        directory: SessionDirectory,
        read: async_sessionmaker[AsyncSession],
        ready_timeout_s: float,
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        lease_s: float = 60.0,
        sweep_every_s: float = _SWEEP_EVERY_S,
        ids: EngineIds | None = None,
        apply_reports: ReportSink | None = None,
        pacing: Pacing | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._db = db
        self._directory = directory
        self._read = read
        self._runtime = runtime
        self._events = events
        self._queued = queued
        self._messages = messages
        self._worker_id = worker_id
        self._ready_timeout_s = ready_timeout_s
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._lease_s = lease_s
        self._sweep_every_s = sweep_every_s
        # Engine ids of recent sends, shared with the report path; acks it held for
        # them go back to it (`apply_reports`) once the ids are learned.
        self._ids = ids if ids is not None else EngineIds()
        self._apply_reports = apply_reports
        self._pacing = pacing if pacing is not None else Pacing(None)
        self._loop = BackgroundTask("send-worker", self._run)
        self._last_sweep = 0.0
        self._stop_grace_s = stop_grace_s
        # Set by `stop`: no new claim, and no run hands over another message.
        self._stopping = False
        self._active = 0  # claims in progress, with their runs
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._loop.start()

    async def release_claims(self) -> None:
        """Give back what this worker holds, so nobody waits for its leases to run out."""
        async with self._db() as db, db.begin():
            await release_all(db, outbox.SENDS, self._worker_id)

    async def stop(self) -> None:
        """Claim nothing more; let the runs in flight finish the send in hand and record
        their outcomes (what they did not try is given back untouched, not in doubt), for
        up to `stop_grace_s`; then cut short what still runs and give back the rest."""
        self._stopping = True
        try:
            if self._active:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._stop_grace_s):
                        await self._idle.wait()
            await self._loop.stop()
            # A send cut short may have reached the engine: it goes again with the same
            # id, or, for an engine that cannot resend safely, fails as
            # SEND_OUTCOME_UNKNOWN (only that send: the later ones were never marked).
            await self.release_claims()
        finally:
            self._stopping = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            queued = self._queued.ticket()  # a send accepted while we look still wakes us
            looked = utcnow()
            try:
                sent = await self.run_once()
                if loop.time() - self._last_sweep > self._sweep_every_s:
                    self._last_sweep = loop.time()
                    await self.expire_waiting()
            except Exception:
                log.exception("send_worker_failed")
                sent = 0
            if not sent:
                await self._queued.wait(await self._idle_wait(looked), queued)

    async def _idle_wait(self, looked: datetime) -> float:
        """How long to wait for work: until the next scheduled send falls due, if that is
        sooner than the idle poll (new sends wake the worker at once anyway).

        Sends that fall due after `looked` (when the claim began) count, those in the
        past included: a send that fell due during the claim would otherwise be
        "not after now" here and wait for the idle poll (0.5 s late, measured)."""
        ready = sorted(self._runtime.sending_sessions())
        if not ready:
            return outbox.LOOK_EVERY_S
        try:
            async with self._read() as db:
                due = await outbox.next_due(db, ready, looked)
        except Exception:
            log.exception("send_worker_next_due_failed")
            return outbox.LOOK_EVERY_S
        wait = outbox.LOOK_EVERY_S
        if due is not None:
            wait = min(wait, max(0.0, (due - utcnow()).total_seconds()))
        paced = self._pacing.wait_s()  # a paced session's next gap ends
        return wait if paced is None else min(wait, paced)

    async def run_once(self) -> int:
        """Claim and send one batch; the number of jobs claimed.

        A paced session (`messages/pacing.py`) is claimed one send at a time, and only
        once its gap since the last has passed."""
        ready = self._runtime.sending_sessions()
        free: list[str] = []
        intervals: dict[str, SendInterval] = {}  # the paced sessions, decided once here
        for session_id in sorted(ready):
            interval = self._paced_now(session_id)
            if interval is None:
                free.append(session_id)
            else:
                intervals[session_id] = interval
        self._pacing.keep_only(intervals)
        paced = [s for s in intervals if self._pacing.may_send(s)]
        if (not free and not paced) or self._stopping:
            return 0
        self._active += 1
        self._idle.clear()
        try:
            now, claimed = utcnow(), asyncio.get_running_loop().time()
            async with self._db() as db, db.begin():
                runs = []
                if free:
                    runs += await outbox.claim(
                        db, free, now, self._lease_s, self._worker_id, _BATCH
                    )
                if paced:
                    runs += await outbox.claim(
                        db, paced, now, self._lease_s, self._worker_id, _BATCH, per_session=1
                    )
            self._pacing.claimed(paced, {run[0].session_id for run in runs})
            if runs:
                # Every run is waited for, whichever fails: one that raised used to end
                # the wait while the others went on sending, unseen by a stop, after
                # their claims were given back.
                outcomes = await asyncio.gather(
                    *(
                        self._send_run(run, intervals.get(run[0].session_id), claimed)
                        for run in runs
                    ),
                    return_exceptions=True,
                )
                failures = [o for o in outcomes if isinstance(o, Exception)]
                if failures:
                    raise ExceptionGroup("send runs failed", failures)
            return sum(len(run) for run in runs)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _send_run(
        self, run: list[OutboxJobRow], interval: SendInterval | None, claimed: float
    ) -> None:
        """Send one session's run in order, as one batch where the engine can, and record
        every outcome in one transaction; the jobs after a failure are given back.
        `interval`: the session's pace as its claim decided it (None: not paced);
        `claimed`: when its lease was written (the event loop's clock)."""
        session_id = run[0].session_id
        session = self._directory.get(session_id)
        async with self._read() as db:
            found = await db.execute(
                select(MessageRow).where(
                    MessageRow.session_id == session_id,
                    MessageRow.id.in_([job.message_id for job in run]),
                )
            )
            messages = {row.id: row for row in found.scalars()}
        finished: list[OutboxJobRow] = []  # nothing left to send (cancelled, gone)
        sending: list[tuple[OutboxJobRow, MessageRow]] = []
        for job in run:
            message = messages.get(job.message_id)
            if message is None or message.status != MessageStatus.PENDING:
                finished.append(job)
            else:
                sending.append((job, message))
        client = self._runtime.client(session_id)
        outcomes: list[SendResult] = []  # filled as the messages go (see `_hand_over`)
        try:
            if (
                sending
                and session is not None
                and client is not None
                and session_id in self._runtime.sending_sessions()
            ):
                safe = isinstance(client, ResendsSafely) and client.resends_safely
                outgoing: list[OutgoingMessage] = []
                unsendable: SendFailed | None = None
                for job, message in sending:
                    if job.handed_at is not None and not safe:
                        # Handed over before a crash or a stop: it may have gone out under
                        # an id we never learned. Never twice: the client decides.
                        unsendable = SendFailed(
                            _IN_DOUBT, retryable=False, code=SEND_OUTCOME_UNKNOWN
                        )
                        break
                    try:
                        outgoing.append(await self._outgoing(message))
                    except (UnknownContent, KeyError, TypeError, ValueError) as exc:
                        # A row no engine can take fails for good, in its turn.
                        reason = f"the stored message cannot be sent: {exc!r}"
                        unsendable = SendFailed(reason, retryable=False)
                        break
                if outgoing:
                    jobs = [job for job, _m in sending[: len(outgoing)]]
                    lease = self._hold([job.id for job, _m in sending], claimed)
                    try:
                        await self._hand_over(
                            client, jobs, outgoing, session_id, outcomes, safe, lease, interval
                        )
                    finally:
                        await self._let_go(lease)  # before the record writes the leases
                    # Paced since the run was claimed unpaced: the gap starts here too.
                    interval = interval or self._paced_now(session_id)
                    if interval is not None:
                        self._pacing.sent(session_id, interval)
                went_all = not any(isinstance(out, BaseException) for out in outcomes)
                if unsendable is not None and went_all and len(outcomes) == len(outgoing):
                    outcomes.append(unsendable)
        except asyncio.CancelledError:
            # Cut short (a stop past its grace): what went is recorded. The send in hand,
            # if any, is left as it was marked (in doubt where the engine cannot resend),
            # the later jobs untouched (the stop gives back their claims).
            tried = sending[: len(outcomes)]
            record = self._finish(session_id, session, finished, tried, outcomes)
            await self._settle(record, cut_short=True)
            raise
        await self._settle(self._finish(session_id, session, finished, sending, outcomes))

    async def _settle(self, record: Awaitable[None], *, cut_short: bool = False) -> None:
        """Await a run's record, which a stop cutting the run short does not cut short
        in turn: it is let finish for up to `stop_grace_s` more. `cut_short`: the run
        was cancelled already, and no second cancel would come to bound the wait (a
        database that keeps the record waiting would have held the stop, and with it
        the sessions' share of SHUTDOWN_TIMEOUT_S)."""
        task = asyncio.ensure_future(record)
        if cut_short:
            await self._within_grace(task)
            return
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await self._within_grace(task)
            raise

    async def _within_grace(self, task: asyncio.Future[None]) -> None:
        """The record let finish for up to `stop_grace_s`, then cut short."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(self._stop_grace_s):
                await task

    async def _finish(
        self,
        session_id: str,
        session: SessionRow | None,
        finished: list[OutboxJobRow],
        sending: list[tuple[OutboxJobRow, MessageRow]],
        outcomes: list[SendResult],
    ) -> None:
        """Learn the engine's ids, record the run, then apply the acks that came for
        those ids before they were known.

        The ids are known from the moment the engine returned them, before they are
        recorded: an ack may overtake the record (and one may have come before the
        engine even returned, then it was held)."""
        engine_ids = [
            (str(out), message.id)
            for (_job, message), out in zip(sending, outcomes, strict=False)
            if out is not None and not isinstance(out, BaseException)
        ]
        held = self._ids.learn(session_id, engine_ids) if engine_ids else []
        # Left unwritten, the run would stay claimed (and its session's queue held)
        # until the claim ran out, a minute; what went out goes again.
        await again_if_deadlocked(
            partial(self._record, session, finished, sending, outcomes),
            event="send_record_retried",
            attempts=_RECORD_ATTEMPTS,
            session_id=session_id,
        )
        if held and session is not None and self._apply_reports is not None:
            await self._apply_reports(session, list(held))

    async def _mark_handed(self, job_ids: list[int]) -> int:
        """Record, durably and before the engine sees them, that these jobs go out now
        (only for engines that cannot resend safely); the number of jobs marked: only
        those this worker still holds (leased, not done: a job cancelled or claimed by
        another meanwhile is not)."""
        now = utcnow()
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(_JOBS)
                .where(*self._still_ours(job_ids), _JOBS.c.locked_until > now)
                .values(handed_at=now)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def _still_ours(self, job_ids: list[int]) -> list[ColumnElement[bool]]:
        """Which of these jobs this worker still holds: claimed by it, not done (a job
        cancelled, or claimed by another instance, is not)."""
        return [
            _JOBS.c.id.in_(job_ids),
            _JOBS.c.locked_by == self._worker_id,
            _JOBS.c.done.is_(False),
        ]

    async def _marked(self, job_ids: list[int], session_id: str) -> bool:
        """Mark the jobs handed over; False if that failed, or a job is no longer this
        worker's: none is sent then (they are given back untried, the mark cleared,
        whether or not it was written)."""
        try:
            marked = await self._mark_handed(job_ids)
        except Exception:
            log.exception("send_mark_failed", session_id=session_id)
            return False
        if marked != len(job_ids):
            log.warning("send_jobs_not_ours", session_id=session_id, jobs=len(job_ids) - marked)
            return False
        return True

    def _hold(self, job_ids: list[int], claimed: float) -> _RunLease:
        """The run's lease, renewed from a third of it on until `_let_go` (a timer only:
        a run that ends sooner, as most do, costs no write)."""
        lease = _RunLease(job_ids, claimed + self._lease_s)
        lease.timer = asyncio.get_running_loop().call_at(
            claimed + self._lease_s / 3, self._start_renewing, lease
        )
        return lease

    def _start_renewing(self, lease: _RunLease) -> None:
        lease.renewing = asyncio.create_task(self._renew(lease), name="send-lease")

    async def _renew(self, lease: _RunLease) -> None:
        """Write the run's lease anew every third of it until the run is over; a write
        that fails is tried again a third later (the run stops handing over once less
        than a third is left: `_still_held`). A job of the run that this worker no
        longer holds (its session taken over by another instance) ends the run."""
        loop = asyncio.get_running_loop()
        while not lease.done.is_set():
            started = loop.time()
            try:
                now = utcnow()
                async with self._db() as db, db.begin():
                    result = await db.execute(
                        update(_JOBS)
                        .where(*self._still_ours(lease.job_ids), _JOBS.c.locked_until.is_not(None))
                        .values(locked_until=now + timedelta(seconds=self._lease_s))
                    )
                held = int(result.rowcount or 0)  # type: ignore[attr-defined]
                if held == len(lease.job_ids):
                    lease.until = started + self._lease_s
                else:
                    log.warning("send_jobs_not_ours", jobs=len(lease.job_ids) - held)
                    lease.until = started  # no further hand-over
            except Exception:
                log.warning("send_lease_renewal_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lease_s / 3):
                    await lease.done.wait()

    def _still_held(self, lease: _RunLease) -> bool:
        """Whether the run may hand over one more message: its lease has more than a
        third left (renewals keep it at two thirds or more)."""
        return asyncio.get_running_loop().time() < lease.until - self._lease_s / 3

    @staticmethod
    async def _let_go(lease: _RunLease) -> None:
        """Stop renewing (a renewal being written is let finish)."""
        if lease.timer is not None:
            lease.timer.cancel()
        lease.done.set()
        if lease.renewing is not None:
            await asyncio.shield(lease.renewing)

    def _paced_now(self, session_id: str) -> SendInterval | None:
        """The session's send interval as its config says now (None: unpaced)."""
        row = self._directory.get(session_id)
        return self._pacing.interval(row.config) if row is not None else None

    async def _hand_over(
        self,
        client: EngineClient,
        jobs: list[OutboxJobRow],
        outgoing: list[OutgoingMessage],
        session_id: str,
        outcomes: list[SendResult],
        safe: bool,
        lease: _RunLease,
        interval: SendInterval | None = None,
    ) -> None:
        """Send, appending to `outcomes` the outcome of each message attempted, in order;
        stops at a failure, and before the next message once the worker is stopping or
        the run's lease may run out (what is left is given back untried).

        Where the engine cannot resend safely, a job is marked handed over (committed)
        just before the engine gets it: the whole run at once for a batch, else each job
        before its own send, so that a stop or a crash mid-run leaves in doubt only what
        the engine may have had, never the jobs behind it. The mark is written only on a
        job this worker still holds: none that was cancelled meanwhile goes out."""
        if self._stopping or not self._still_held(lease):
            return
        if isinstance(client, BatchSender):
            if not safe and not await self._marked([job.id for job in jobs], session_id):
                return
            try:
                outcomes.extend(await client.send_many(outgoing))
            except Exception as exc:
                log.exception("engine_send_failed", session_id=session_id)
                outcomes.append(exc)
            return
        for job, message in zip(jobs, outgoing, strict=True):
            if self._stopping or not self._still_held(lease):
                return  # the rest is given back untried
            if outcomes and interval is None and self._paced_now(session_id) is not None:
                # Paced since the run was claimed (up to 500 sends at machine speed): the
                # rest is given back untried, and goes out one gap at a time. It used to
                # go on at full speed, the config change answered 200 all the same.
                return
            if not safe and not await self._marked([job.id], session_id):
                return
            try:
                outcomes.append(await client.send(message))
            except Exception as exc:
                if not isinstance(exc, SendFailed):
                    log.exception(
                        "engine_send_failed", session_id=session_id, message_id=message.id
                    )
                outcomes.append(exc)
                return

    async def _record(
        self,
        session: SessionRow | None,
        finished: list[OutboxJobRow],
        sending: list[tuple[OutboxJobRow, MessageRow]],
        outcomes: list[SendResult],
    ) -> None:
        """A run's outcomes in one transaction: sent jobs done with `sent` and
        `message.sent`, a failure retried or failed, the jobs not attempted given back.

        The jobs are written first, then the messages locked in id order (the order the
        ack path, `_cancel` and the sweep keep): an ack applied since the send may have
        recorded `sent` already (and logged it), or moved the message on; then only the
        job and the engine's id are recorded here, so `message.sent` is logged once,
        before the acks."""
        went = [(job, message, out) for (job, message), out in zip(sending, outcomes, strict=False)]
        sent = [
            (job, message, out) for job, message, out in went if not isinstance(out, BaseException)
        ]
        failure = next(
            ((job, out) for job, _m, out in went if isinstance(out, BaseException)), None
        )
        not_tried = [job for job, _m in sending[len(outcomes) :]]
        events: list[Event] = []
        now = utcnow()
        # Each message's `message.sent` is made before the transaction (no Python work
        # while the writer is held); it is logged only if the move to `sent` is ours.
        announced: dict[str, Event] = {}
        if session is not None:
            for _job, message, _out in sent:
                message.status, message.updated_at = MessageStatus.SENT.value, now
                data = await self._messages.event_data(message)
                announced[message.id] = session_event(session, MESSAGE_SENT, data)
        async with self._db() as db, db.begin():
            if finished:
                await db.execute(
                    update(OutboxJobRow)
                    .where(OutboxJobRow.id.in_([job.id for job in finished]))
                    .values(done=True, locked_until=None)
                )
            if sent:
                await db.execute(
                    update(OutboxJobRow)
                    .where(OutboxJobRow.id.in_([job.id for job, _m, _o in sent]))
                    .values(done=True, locked_until=None, attempts=OutboxJobRow.attempts + 1)
                )
                assert session is not None
                events += await self._mark_sent(db, session.id, sent, announced, now)
            # The sent ones' events first: a failure's event follows them in the log.
            await self._events.append(db, events)
            if failure is not None:
                job, error = failure
                assert isinstance(error, BaseException)
                if isinstance(error, SendFailed):
                    retryable, code, reason = error.retryable, error.code, str(error)
                else:
                    retryable, code = True, ENGINE_ERROR
                    reason = f"{type(error).__name__}: {error}"
                # Only the engine's own `SendFailed` says the message did not go.
                await self._failed(
                    db,
                    job,
                    reason,
                    retryable=retryable,
                    code=code,
                    not_sent=isinstance(error, SendFailed),
                )
            if not_tried:
                await outbox.release(db, not_tried, self._worker_id)

    @staticmethod
    async def _mark_sent(
        db: AsyncSession,
        session_id: str,
        sent: Sequence[tuple[OutboxJobRow, MessageRow, SendResult]],
        announced: dict[str, Event],
        now: datetime,
    ) -> list[Event]:
        """Record `sent` for the messages still `pending` (an ack may have been first),
        with Core statements: the statuses read under the row locks in id order, then
        the moves and the engine ids, a message's both in one UPDATE; the events of
        the moves.

        Each row is written by one statement: on PostgreSQL a second write of a row in
        the same transaction checks its foreign keys again, which waits for its session
        being deleted beside it, while the delete waits for these row locks (a
        deadlock)."""
        ids = [message.id for _job, message, _out in sent]
        chats = await MessageRepository(db).lock_chats(session_id, ids)
        statuses = {i: status for i, (status, _chat, _lid) in chats.items()}
        moving = {
            i for i in ids if i in statuses and path(statuses[i], MessageStatus.SENT) == _SENT
        }
        table: Any = MessageRow.__table__
        # Moves without an engine id (an engine sending under our id) in one statement;
        # the rows with an engine id one statement each (an executemany), their move too.
        with_ids = {message.id: str(out) for _j, message, out in sent if out is not None}
        bare = [i for i in ids if i in moving and i not in with_ids]
        if bare:
            await db.execute(
                update(table)
                .where(table.c.session_id == session_id, table.c.id.in_(bare))
                .values(status=MessageStatus.SENT.value, updated_at=now)
            )
        writes = [
            {
                "b_id": i,
                "b_status": MessageStatus.SENT.value if i in moving else None,
                "b_at": now if i in moving else None,
                "b_engine_id": engine_id,
            }
            for i, engine_id in with_ids.items()
            if i in statuses
        ]
        if writes:
            await db.execute(
                update(table)
                .where(table.c.session_id == session_id, table.c.id == bindparam("b_id"))
                .values(
                    status=func.coalesce(bindparam("b_status", type_=String), table.c.status),
                    updated_at=func.coalesce(
                        bindparam("b_at", type_=table.c.updated_at.type), table.c.updated_at
                    ),
                    engine_id=func.coalesce(
                        bindparam("b_engine_id", type_=String), table.c.engine_id
                    ),
                ),
                writes,
            )
        return [
            _in_chat(announced[i], *chats[i][1:]) for i in ids if i in moving and i in announced
        ]

    async def _outgoing(self, message: MessageRow) -> OutgoingMessage:
        """The stored message as the engine takes it: typed, and with the messages it
        points at (a reaction's target, a reply's quote) named by the engine's ids,
        where an engine gave them others."""
        content = from_stored(message.type, message.content or {})
        reply = reply_of(content)
        ref = content.message_id if isinstance(content, Reaction) else reply and reply.id
        if not ref:
            return OutgoingMessage(message.id, message.chat_id, content)
        async with self._read() as db:
            target = await MessageRepository(db).get(message.session_id, ref)
        if target is not None:
            engine_ref = target.engine_id or target.id
            if isinstance(content, Reaction):
                # Whose message it is: WhatsApp's key for a target in a group names it.
                content = replace(
                    content, message_id=engine_ref, target=Target(target.from_me, target.sender)
                )
            elif isinstance(content, Text | Media):
                # A quote shows the quoted words; WhatsApp takes them from the reply.
                quoted = target.content or {}
                words = quoted.get("text") or quoted.get("caption") or ""
                content = replace(content, reply_to=Reply(engine_ref, words, target.sender))
        return OutgoingMessage(message.id, message.chat_id, content)

    async def _failed(
        self,
        db: AsyncSession,
        job: OutboxJobRow,
        reason: str,
        *,
        retryable: bool,
        code: str,
        not_sent: bool,
    ) -> None:
        """An attempt that failed: retried after a backoff, or the message fails."""
        row = await db.get(OutboxJobRow, job.id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = reason
        if retryable and row.attempts < self._max_attempts:
            if not_sent:
                row.handed_at = None  # the engine said it did not go: safe to try again
            delay = backoff_s(row.attempts - 1, self._backoff_base_s, self._backoff_max_s)
            # The lease doubles as the wait: the session's later jobs wait behind it.
            row.locked_until = utcnow() + timedelta(seconds=delay)
            return
        await self._fail_message(db, row, code, reason)

    async def _fail_message(
        self, db: AsyncSession, job: OutboxJobRow, code: str, reason: str
    ) -> None:
        """Finish the job and fail its message if it never went.

        The job's end is flushed first, then the message locked (the order the sender
        takes them in): an ack applied meanwhile means the engine took the message,
        and it stays as the ack left it."""
        job.done, job.locked_until = True, None
        await db.flush()
        message = await MessageRepository(db).lock(job.session_id, job.message_id)
        session = await db.get(SessionRow, job.session_id)
        if message is None or session is None:
            return
        if MessageStatus(message.status) != MessageStatus.PENDING:
            return
        failed = MessageStatus.FAILED
        message.status, message.updated_at = failed.value, utcnow()
        message.error_code, message.error = code, f"{code}: {reason}"
        data = ack_data(message, failed.value)
        await self._events.append(db, [session_event(session, MESSAGE_ACK, data)])

    async def expire_waiting(self) -> None:
        """Fail sends whose session has not been ready for `SEND_READY_TIMEOUT_S`.

        The jobs are claimed (`waiting_too_long` locks them, skipping those another
        sweep holds), so instances sweeping at once fail each message one time."""
        cutoff = utcnow() - timedelta(seconds=self._ready_timeout_s)
        # Ready here, or (several instances) ready on the instance that runs it.
        ready = sorted(self._runtime.ready_sessions() | self._directory.with_status("ready"))
        async with self._db() as db, db.begin():
            jobs = await outbox.waiting_too_long(db, ready, cutoff, 500)
            for job in jobs:
                await self._fail_message(
                    db, job, "SESSION_NOT_READY", "the session was not ready in time"
                )


def _in_chat(event: Event, chat_id: str, chat_lid: str | None) -> Event:
    """`message.sent` naming the message's chat as it is now: a LID's merge may have
    moved it while it was being sent (a client that merged the chat on `contact.update`
    made the LID's chat again from a `message.sent` that still named it)."""
    if event.data.get("chatId") == chat_id:
        return event
    data = {**event.data, "chatId": chat_id}
    data.pop("chatLid", None)  # events leave out what is null
    if chat_lid is not None:
        data["chatLid"] = chat_lid
    return replace(event, data=data)
