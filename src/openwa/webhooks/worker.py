"""Delivers webhook rows: signed POSTs with aiohttp, retried with backoff and jitter.

Deliveries to one webhook keep the order of a session's events: the claim hands out
only the oldest pending delivery of each (webhook, session) and the due ones right
behind it; while the oldest waits for a retry, the later ones wait too; once it has
failed for good, the next go on. `webhook-id` is the event id on every attempt, so
receivers can de-duplicate.

Each webhook is worked in a lane of its own (see `DeliveryWorker`), so a receiver that
answers slowly, or not at all, delays only its own deliveries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
import structlog
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.engine import on_commit
from openwa.db.group_commit import GroupCommit
from openwa.db.models import DeliveryAttemptRow, DeliveryRow, EventRow, WebhookRow
from openwa.events.log import EventLog, from_row
from openwa.kit import wire_json
from openwa.kit.addresses import guarded_connector
from openwa.kit.background import BackgroundTask
from openwa.kit.backoff import backoff_s
from openwa.kit.clock import utcnow
from openwa.kit.signal import Signal
from openwa.queue.claims import Budget, QueueSpec, claim_runs, release, release_all
from openwa.webhooks import posting
from openwa.webhooks.failing import note_failure, note_success
from openwa.webhooks.repository import active_ids
from openwa.webhooks.signing import signature_header
from openwa.webhooks.successes import write_successes

log = structlog.get_logger(__name__)

DELIVERIES = QueueSpec(
    model=DeliveryRow,
    group=lambda t: [t.webhook_id, t.session_id],
    order=lambda t: [t.event_cursor, t.id],
    pending=lambda t: t.status == "pending",
    due_at=lambda t: t.next_attempt_at,
)

_PER_LANE = 100  # deliveries a lane takes per round; its lease is sized to them
_CLAIM_HEADS_PER_SLOT = 4
_IDLE_WAIT_S = 0.5
_RECORD_BATCH = 20
# A request unanswered this long makes its lane "slow": it stops counting against
# WEBHOOK_CONCURRENCY, so that the slot goes to another webhook.
SLOW_AFTER_S = 1.0
# How many slow lanes may be in flight, per unit of WEBHOOK_CONCURRENCY.
SLOW_PER_SLOT = 4
# Time for the database work of a lane, on top of its requests, in its lease.
_LEASE_MARGIN_S = 60.0
# A lane that failed (its database work, say) keeps its webhook this long before the
# webhook is claimed again, rather than retaking and reposting its deliveries at once.
# A paused lane counts against no bound: its slot goes to another webhook meanwhile.
_LANE_FAILED_PAUSE_S = 5.0
# A lane posts only while its lease will outlast the request by this much: past its
# lease (its instance paused, its database stalled), another instance may have taken
# its deliveries and be sending them, and a request of ours beside it would send them
# twice, or out of order.
_LEASE_SAFETY_S = 5.0
# Rendered event bodies kept for the other webhooks of the same events (see `_Bodies`).
_BODIES_MAX = 4096
_BODY_TTL_S = 60.0


def _webhook_of(delivery: DeliveryRow) -> str:
    return delivery.webhook_id


@dataclass(frozen=True, slots=True)
class _Body:
    """An event as it is posted: its id (the `webhook-id`) and its signed JSON."""

    event_id: str
    json: bytes


class _Bodies:
    """Event bodies by cursor, shared by the lanes: an event that goes to ten webhooks
    is read and rendered once, not once per webhook. Logged events never change; an
    entry is kept at most `_BODY_TTL_S`, far inside any retention, so an event deleted
    since is not delivered from here."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[float, _Body]] = {}

    def get(self, cursor: int, now: float) -> _Body | None:
        item = self._items.get(cursor)
        return item[1] if item is not None and item[0] > now else None

    def put(self, cursor: int, body: _Body, now: float) -> None:
        if len(self._items) >= _BODIES_MAX:
            live = {c: item for c, item in self._items.items() if item[0] > now}
            # Oldest first (insertion order): keep the newer half when all are live.
            self._items = (
                live
                if len(live) < _BODIES_MAX // 2
                else dict(list(live.items())[-(_BODIES_MAX // 2) :])
            )
        self._items[cursor] = (now + _BODY_TTL_S, body)


_NO_LEASE = datetime.min.replace(tzinfo=UTC)


@dataclass(eq=False)
class _Lane:
    """One webhook's work in flight: its claimed runs, delivered one after another."""

    webhook_id: str
    runs: list[list[DeliveryRow]]
    claimed: int = 0  # deliveries claimed over the lane's life (its rounds)
    since: float | None = None  # monotonic start of the request in flight, if any
    slow: bool = False
    paused: bool = False  # failed, and waiting before its webhook is claimed again
    # End of the lease of its round's deliveries, on the wall clock, as other instances
    # judge it (a monotonic clock stands still while the host is suspended).
    lease_until: datetime = _NO_LEASE
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class DeliveryWorker:
    """A dispatcher that claims work for idle webhooks and runs each in its own lane.

    A lane is one webhook: it delivers the runs claimed for it (one per session) in
    order, then ends. The claim leaves out webhooks whose lane is running, so one
    webhook never has two lanes and its order holds; lanes never wait for each other.
    At most `concurrency` lanes count as busy; a lane whose request has been unanswered
    for `SLOW_AFTER_S` counts as slow instead, up to `SLOW_PER_SLOT * concurrency` slow
    lanes, so receivers that hold requests cannot take every slot.
    """

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        wake: Signal,
        *,
        worker_id: str,
        timeout_s: float,
        backoff_base_s: float,
        backoff_max_s: float,
        max_attempts: int,
        read: async_sessionmaker[AsyncSession],
        allow_private: bool,
        concurrency: int = 16,
        on_results: Callable[[int, int, int], None] | None = None,
        disable_after: timedelta | None = None,
    ) -> None:
        """`on_results(succeeded, failed, given_up)`: attempts recorded, once committed;
        `disable_after`: WEBHOOK_DISABLE_AFTER_DAYS (webhooks/failing.py)."""
        self._db = db
        self._read = read
        # Results of every lane, written together: one commit for many lanes' batches.
        self._results = GroupCommit(db, name="delivery-results")
        self._events = events
        self._wake = wake
        self._worker_id = worker_id
        self._timeout_s = timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_attempts = max_attempts
        self._allow_private = allow_private
        self._concurrency = concurrency
        self._on_results = on_results
        self._disable_after = disable_after
        self._slow_cap = SLOW_PER_SLOT * concurrency
        self._http: aiohttp.ClientSession | None = None
        self._loop = BackgroundTask("delivery-worker", self._run)
        self._lanes: dict[str, _Lane] = {}
        self._bodies = _Bodies()
        self._claiming = asyncio.Lock()
        # Set when a dispatch found no free slot (a webhook may be waiting for one):
        # lanes then end after their round instead of claiming their next one.
        self._starved = False
        # Set when a lane ends or a slow request is answered; cleared before each claim,
        # so that nothing that happens during a claim is missed.
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # Every connect is checked against the address it is about to reach.
        connector = guarded_connector(self._allow_private, limit=self._concurrency + self._slow_cap)
        self._http = posting.webhook_client(connector, self._timeout_s)
        self._loop.start()

    async def release_claims(self) -> None:
        """Give back what this worker holds, so nobody waits for its leases to run out."""
        async with self._db() as db, db.begin():
            await release_all(db, DELIVERIES, self._worker_id)

    async def stop(self) -> None:
        await self._loop.stop()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._results.close()
        await self.release_claims()
        if self._http is not None:
            await self._http.close()

    def _busy(self) -> int:
        """Lanes that count against the bound (all but the slow and the paused ones)."""
        return sum(1 for lane in self._lanes.values() if not (lane.slow or lane.paused))

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            # Events and wake-ups that come while we claim still wake us afterwards.
            appended, woken = self._events.appended.ticket(), self._wake.ticket()
            try:
                started = await self._dispatch()
            except Exception:
                log.exception("delivery_worker_failed")
                started = []
            if started and self._busy() < self._concurrency:
                continue  # slots are left: there may be more work for other webhooks
            # New events and replays wake us, and so does a lane that ends; retries are
            # found by polling; a request that turns slow is noticed on time.
            await _first(
                [
                    self._events.appended.wait(_IDLE_WAIT_S, appended),
                    self._wake.wait(_IDLE_WAIT_S, woken),
                ],
                self._changed,
                self._next_slow_check(),
            )

    async def run_once(self) -> int:
        """Claim for the idle webhooks and wait for the lanes started: deliveries claimed."""
        started = await self._dispatch()
        tasks = [lane.task for lane in started if lane.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        return sum(lane.claimed for lane in started)

    def _mark_slow(self) -> None:
        """Lanes whose request is past the grace stop counting against the bound."""
        now = time.monotonic()
        slow = sum(1 for lane in self._lanes.values() if lane.slow)
        overdue = sorted(
            (
                lane
                for lane in self._lanes.values()
                if not lane.slow and lane.since is not None and now - lane.since >= SLOW_AFTER_S
            ),
            key=lambda lane: lane.since or 0.0,
        )
        for lane in overdue[: max(0, self._slow_cap - slow)]:
            lane.slow = True

    def _next_slow_check(self) -> float:
        """Seconds until a request in flight turns slow (or the idle poll, if sooner)."""
        if sum(1 for lane in self._lanes.values() if lane.slow) >= self._slow_cap:
            return _IDLE_WAIT_S
        now = time.monotonic()
        waits = [
            lane.since + SLOW_AFTER_S - now
            for lane in self._lanes.values()
            if not lane.slow and lane.since is not None
        ]
        return max(0.01, min([_IDLE_WAIT_S, *waits]))

    async def _dispatch(self) -> list[_Lane]:
        """Claim work for as many idle webhooks as there are free slots; start their lanes."""
        async with self._claiming:
            self._mark_slow()
            free = self._concurrency - self._busy()
            if free <= 0:
                self._starved = True
                return []
            if self._lanes and not await self._laneless_webhook():
                # Every active webhook has a lane, and each claims its own next round:
                # a claim here would find nothing (on SQLite, while holding the writer).
                self._starved = False
                return []
            scope = [DeliveryRow.webhook_id.in_(active_ids())]
            if self._lanes:
                scope.append(DeliveryRow.webhook_id.not_in(list(self._lanes)))
            lanes = await self._claim(scope, free)
            if len(lanes) < free:
                self._starved = False  # every webhook with work due has a lane
            for lane in lanes:
                self._lanes[lane.webhook_id] = lane
                lane.task = asyncio.create_task(
                    self._deliver_lane(lane), name=f"delivery-lane-{lane.webhook_id}"
                )
            return lanes

    async def _laneless_webhook(self) -> bool:
        """Whether an active webhook has no lane here, read beside the writer.

        New events wake the dispatcher; while every webhook is already in a lane (a
        busy receiver's steady state) this one-row read replaces a claim each time."""
        async with self._read() as db:
            found = await db.execute(
                active_ids().where(WebhookRow.id.not_in(list(self._lanes))).limit(1)
            )
            return found.first() is not None

    async def _claim_next(self, lane: _Lane) -> bool:
        """The lane's next round: runs of its own webhook, claimed by the lane itself.

        A lane that goes back to the dispatcher after every round makes a claim over
        every webhook's queue each time; claiming for one webhook reads only its part.
        While another webhook may be waiting for a slot, the lane ends instead.
        """
        if self._starved:
            return False
        scope = [
            DeliveryRow.webhook_id == lane.webhook_id,
            DeliveryRow.webhook_id.in_(active_ids()),
        ]
        claimed = await self._claim(scope, 1)
        lane.runs = claimed[0].runs if claimed else []
        if claimed:
            lane.lease_until = claimed[0].lease_until
        lane.claimed += sum(len(run) for run in lane.runs)
        return bool(lane.runs)

    async def _claim(self, scope: Sequence[ColumnElement[bool]], free: int) -> list[_Lane]:
        """Runs of the deliveries in `scope`, made into at most `free` lanes; each
        lane's lease covers every request it may make."""
        now = utcnow()
        async with self._db() as db, db.begin():
            runs = await claim_runs(
                db,
                DELIVERIES,
                scope=scope,
                now=now,
                lease_s=self._lease_s,
                worker=self._worker_id,
                limit=free * _CLAIM_HEADS_PER_SLOT,
                # A run may fill its lane's round: a claim costs about as much for 100
                # rows as for 50.
                per_group=_PER_LANE,
                # One lane's round for each of at most `free` webhooks: a lane takes
                # all of its webhook's runs, and nothing is claimed for no lane.
                budget=Budget(_webhook_of, _PER_LANE, keys=free),
            )
            lanes: dict[str, _Lane] = {}
            for run in runs:
                webhook_id = run[0].webhook_id
                lanes.setdefault(webhook_id, _Lane(webhook_id, [])).runs.append(run)
            for lane in lanes.values():
                lane.claimed = sum(len(run) for run in lane.runs)
                lane.lease_until = now + timedelta(seconds=self._lease_s(lane.claimed))
        return list(lanes.values())

    def _lease_s(self, deliveries: int) -> float:
        """A lane of this many deliveries may take a timeout for each, and some database time."""
        return deliveries * self._timeout_s + _LEASE_MARGIN_S

    async def _deliver_lane(self, lane: _Lane) -> None:
        try:
            while True:
                for run in lane.runs:
                    await self._deliver_run(lane, run)
                lane.runs = []
                if not await self._claim_next(lane):
                    break
        except Exception:
            log.exception("delivery_lane_failed", webhook_id=lane.webhook_id)
            try:
                # Unrecorded successes go again, with the same webhook-id (at least once).
                async with self._db() as db, db.begin():
                    ids = [d.id for run in lane.runs for d in run]
                    await release(db, DeliveryRow, ids, self._worker_id)
            except Exception:
                log.exception("delivery_lane_release_failed", webhook_id=lane.webhook_id)
            # Still the webhook's lane meanwhile, so no claim takes its work; but no
            # longer busy, so its slot goes to another webhook.
            lane.paused = True
            self._changed.set()
            await asyncio.sleep(_LANE_FAILED_PAUSE_S)
        finally:
            if self._lanes.get(lane.webhook_id) is lane:
                del self._lanes[lane.webhook_id]
            self._changed.set()

    async def _deliver_run(self, lane: _Lane, run: list[DeliveryRow]) -> None:
        """Deliver one (webhook, session) run in order; stop at the first failure.

        Successes are recorded a batch at a time: a crash before the record means a
        redelivery with the same `webhook-id` (at least once), never a loss.
        """
        now = time.monotonic()
        bodies: dict[int, _Body] = {}
        for delivery in run:
            if (body := self._bodies.get(delivery.event_cursor, now)) is not None:
                bodies[delivery.event_cursor] = body
        async with self._read() as db:
            hook = await db.get(WebhookRow, run[0].webhook_id)
            missing = [d.event_cursor for d in run if d.event_cursor not in bodies]
            if missing:
                found = await db.execute(select(EventRow).where(EventRow.cursor.in_(missing)))
                for row in found.scalars():
                    body = _Body(row.id, wire_json.dumps(from_row(row).envelope()))
                    self._bodies.put(row.cursor, body, now)
                    bodies[row.cursor] = body
        # Full batches of successes are recorded while the next requests go out; the
        # run ends only once every record has committed (the lane's next claim sees them).
        recording: list[asyncio.Task[None]] = []
        try:
            await self._post_run(lane, run, hook, bodies, recording)
        except BaseException:
            # Failing or cancelled: the records are still waited for (none is left running
            # unwatched); the lane gives the run's deliveries back either way.
            await asyncio.gather(*recording, return_exceptions=True)
            raise
        for outcome in await asyncio.gather(*recording, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome  # the run fails: its deliveries are given back, in order

    async def _post_run(
        self,
        lane: _Lane,
        run: list[DeliveryRow],
        hook: WebhookRow | None,
        bodies: dict[int, _Body],
        recording: list[asyncio.Task[None]],
    ) -> None:
        succeeded: list[tuple[DeliveryRow, int, int]] = []
        recovered = hook is None or hook.failing_since is None
        for index, delivery in enumerate(run):
            if any(t.done() and not t.cancelled() and t.exception() for t in recording):
                # A record failed: nothing newer goes out before the run is given back,
                # so the receiver never sees these events again after later ones.
                return
            if utcnow() + timedelta(seconds=self._timeout_s + _LEASE_SAFETY_S) > lane.lease_until:
                # Its lease may end before this request would: the rest are given back
                # (those still ours), and the lane's next claim leases them afresh.
                log.warning("delivery_lane_lease_ran_out", webhook_id=lane.webhook_id)
                await self._record(succeeded, None, [d.id for d in run[index:]])
                return
            event = bodies.get(delivery.event_cursor)
            if hook is None or event is None:
                gone = _Failure(delivery, None, "event or webhook no longer exists", 0, final=True)
                await self._record([], gone)
                continue
            answer = await self._timed_post(lane, hook, event)
            if answer.error is None:
                if not recovered:
                    recovered = await self._note_health(hook, failed=False)
                succeeded.append((delivery, answer.status or 0, answer.duration_ms))
                if len(succeeded) >= _RECORD_BATCH:
                    recording.append(asyncio.create_task(self._record(succeeded, None)))
                    succeeded = []
                continue
            rest = [d.id for d in run[index + 1 :]]
            failure = _Failure(
                delivery, answer.status, answer.error, answer.duration_ms, answer.location
            )
            await self._record(succeeded, failure, rest)
            await self._note_health(hook, failed=True)
            return
        await self._record(succeeded, None)

    async def _note_health(self, hook: WebhookRow, *, failed: bool) -> bool:
        """Keep the webhook's run of failures (webhooks/failing.py), which may switch it
        off. Apart from the results (a failure to write it is logged and costs no
        delivery): once for a run's failure, and for its first success if the webhook
        was failing. Whether it was written."""
        try:
            async with self._db() as db, db.begin():
                if not failed:
                    await note_success(db, hook.id)
                    return True
                off = await note_failure(db, hook.id, utcnow(), self._disable_after)
        except Exception:
            log.exception("webhook_failing_note_failed", webhook_id=hook.id)
            return False
        if off:
            log.error(
                "webhook_disabled",
                webhook_id=hook.id,
                session_id=hook.session_id,
                failing_since=hook.failing_since.isoformat() if hook.failing_since else None,
            )
        return True

    async def _timed_post(self, lane: _Lane, hook: WebhookRow, event: _Body) -> _Answer:
        """A POST during which the lane is in flight (and may turn slow)."""
        lane.since = time.monotonic()
        try:
            return await self._post(hook, event)
        finally:
            lane.since = None
            if lane.slow:
                # Counted again from now on; the freed slow place may go to another lane.
                lane.slow = False
                self._changed.set()

    async def _post(self, hook: WebhookRow, event: _Body) -> _Answer:
        """One signed POST, never following a redirect.

        A 3xx is a failed attempt (as Stripe and GitHub treat it), kept with the
        `Location` it pointed to: following it would send the signed body and the
        webhook's headers wherever the receiver says, a private address included.
        """
        body = event.json
        timestamp = int(time.time())
        secrets_ = [hook.secret]
        if (
            hook.previous_secret
            and hook.previous_secret_until
            and hook.previous_secret_until > utcnow()
        ):
            secrets_.append(hook.previous_secret)
        headers = {
            **hook.headers,
            "Content-Type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets_, event.event_id, timestamp, body),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        location: str | None = None
        assert self._http is not None
        try:
            answered = await posting.post(self._http, hook.url, body, headers, self._timeout_s)
            status, location = answered.status, answered.location
        except TimeoutError:
            error = f"no answer within {self._timeout_s:g}s"
        except Exception as exc:
            # Whatever the receiver's answer makes of the client (aiohttp's errors, a
            # header it cannot read) is this attempt's failure, logged and retried: an
            # error escaping here would fail the lane, and the delivery would be taken
            # again at once, with no attempt in its log and every later one held up.
            if not isinstance(exc, aiohttp.ClientError | OSError):
                # Not the network's doing: kept with its traceback for whoever mends it.
                log.exception("delivery_post_failed", webhook_id=hook.id)
            error = posting.failure_text(exc)
        duration_ms = int((time.perf_counter() - started) * 1000)
        if error is None and status is not None and 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif error is None and not (status is not None and 200 <= status < 300):
            error = f"HTTP {status}"
        return _Answer(status, error, duration_ms, location)

    async def _record(
        self,
        succeeded: list[tuple[DeliveryRow, int, int]],
        failure: _Failure | None,
        unattempted: list[int] | None = None,
    ) -> None:
        """Write the attempts: successes end their delivery; a failure retries or ends it.

        The deliveries behind a failure (`unattempted`) are given back in the same
        transaction: they keep their place and wait for the retry.
        """
        if not succeeded and failure is None and not unattempted:
            return
        await self._results.run(partial(self._write_results, succeeded, failure, unattempted))

    async def _write_results(
        self,
        succeeded: list[tuple[DeliveryRow, int, int]],
        failure: _Failure | None,
        unattempted: list[int] | None,
        db: AsyncSession,
    ) -> None:
        """One lane's results, as a unit of work in the shared results transaction.

        Successes are one UPDATE executed for the whole batch, the successful attempt
        kept on its delivery row (`last_duration_ms`) rather than as a row of its own: a
        delivery is leased to this lane, so its attempt count is the one it was claimed
        with.

        A result is written only while this worker still holds the delivery: a lease
        that ran out (the instance paused past it) may have been taken by another
        instance, whose request is then the one that counts; writing ours would clear
        its lease, or mark a delivery it is still sending as done."""
        now = utcnow()
        await release(db, DeliveryRow, unattempted or [], self._worker_id)
        if succeeded:
            await write_successes(db, succeeded, self._worker_id, now)
        failed = given_up = 0
        if failure is not None:
            # Locked: another instance's claim cannot take it between this read and
            # the write (a claim skips locked rows).
            row = await db.get(DeliveryRow, failure.delivery.id, with_for_update=True)
            if row is not None and row.locked_by == self._worker_id:
                failed = 1
                self._attempt(db, row, now, failure)
                if failure.final or row.attempts >= self._max_attempts:
                    row.status, given_up = "failed", 1
                else:
                    delay = backoff_s(row.attempts - 1, self._backoff_base_s, self._backoff_max_s)
                    row.next_attempt_at = now + timedelta(seconds=delay)
        if self._on_results is not None and (succeeded or failed):
            # Successes a lease lost to another instance are counted here all the same.
            on_commit(db, partial(self._on_results, len(succeeded), failed, given_up))

    @staticmethod
    def _attempt(db: AsyncSession, row: DeliveryRow, now: datetime, failure: _Failure) -> None:
        row.attempts += 1
        row.last_status_code, row.last_error = failure.status, failure.error
        row.last_duration_ms = None  # this attempt has its row (below)
        row.locked_until, row.updated_at = None, now
        db.add(
            DeliveryAttemptRow(
                delivery_id=row.id,
                attempt=row.attempts,
                at=now,
                status_code=failure.status,
                error=failure.error,
                duration_ms=failure.duration_ms,
                details={"location": failure.location} if failure.location else None,
            )
        )


@dataclass(frozen=True)
class _Answer:
    """What one POST came to: `error` is None on a 2xx; `location` is a redirect's."""

    status: int | None
    error: str | None
    duration_ms: int
    location: str | None = None


@dataclass(frozen=True)
class _Failure:
    """A delivery attempt that failed; `final` when retrying cannot help (the event or
    the webhook is gone), said as a field rather than read from the error text."""

    delivery: DeliveryRow
    status: int | None
    error: str
    duration_ms: int
    location: str | None = None
    final: bool = False


async def _first(
    signals: list[Coroutine[Any, Any, None]], changed: asyncio.Event, timeout: float
) -> None:
    """Wait until a signal fires or `changed` is set, or `timeout`."""
    waits = [asyncio.ensure_future(w) for w in [*signals, changed.wait()]]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
