"""Delivers webhook rows: signed POSTs with aiohttp, retried with backoff and jitter.

Deliveries to one webhook keep the order of a session's events: the claim hands out
only the oldest pending delivery of each (webhook, session) and the due ones right
behind it; while the oldest waits for a retry, the later ones wait too; once it has
failed for good, the next go on. `webhook-id` is the event id on every attempt, so
receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta

import aiohttp
import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa import __version__
from openwa.db.models import DeliveryAttemptRow, DeliveryRow, EventRow, WebhookRow
from openwa.events.log import EventLog, from_row
from openwa.kit.background import BackgroundTask
from openwa.kit.clock import utcnow
from openwa.kit.signal import Signal
from openwa.queue.claims import QueueSpec, claim_runs, release, release_all
from openwa.webhooks.signing import signature_header
from openwa.webhooks.url_guard import GuardedResolver, literal_forbidden

log = structlog.get_logger(__name__)

DELIVERIES = QueueSpec(
    model=DeliveryRow,
    group=lambda t: [t.webhook_id, t.session_id],
    order=lambda t: [t.event_cursor, t.id],
    pending=lambda t: t.status == "pending",
    due_at=lambda t: t.next_attempt_at,
)

_BATCH = 64
_PER_GROUP = 50
_IDLE_WAIT_S = 0.5
_RECORD_BATCH = 20


class DeliveryWorker:
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
        allow_private: bool,
    ) -> None:
        self._db = db
        self._events = events
        self._wake = wake
        self._worker_id = worker_id
        self._timeout_s = timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_attempts = max_attempts
        self._allow_private = allow_private
        self._http: aiohttp.ClientSession | None = None
        self._loop = BackgroundTask("delivery-worker", self._run)

    async def start(self) -> None:
        resolver = None if self._allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(limit=200, resolver=resolver)
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"User-Agent": f"OpenWA/{__version__}"},
        )
        self._loop.start()

    async def release_claims(self) -> None:
        """Give back what this worker holds, so nobody waits for its leases to run out."""
        async with self._db() as db, db.begin():
            await release_all(db, DELIVERIES, self._worker_id)

    async def stop(self) -> None:
        await self._loop.stop()
        await self.release_claims()
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("delivery_worker_failed")
                worked = 0
            if not worked:
                # New events and replays both wake us; retries are found by polling.
                await _first(self._events.appended, self._wake, _IDLE_WAIT_S)

    async def run_once(self) -> int:
        active = select(WebhookRow.id).where(WebhookRow.active.is_(True))
        async with self._db() as db, db.begin():
            runs = await claim_runs(
                db,
                DELIVERIES,
                scope=[DeliveryRow.webhook_id.in_(active)],
                now=utcnow(),
                lease_s=self._timeout_s + 60,
                worker=self._worker_id,
                limit=_BATCH,
                per_group=_PER_GROUP,
            )
        if runs:
            await asyncio.gather(*(self._deliver_run(run) for run in runs))
        return sum(len(run) for run in runs)

    async def _deliver_run(self, run: list[DeliveryRow]) -> None:
        """Deliver one (webhook, session) run in order; stop at the first failure.

        Successes are recorded a batch at a time: a crash before the record means a
        redelivery with the same `webhook-id` (at least once), never a loss.
        """
        async with self._db() as db:
            hook = await db.get(WebhookRow, run[0].webhook_id)
            cursors = [d.event_cursor for d in run]
            found = await db.execute(select(EventRow).where(EventRow.cursor.in_(cursors)))
            events = {row.cursor: row for row in found.scalars()}
        succeeded: list[tuple[DeliveryRow, int, int]] = []
        for index, delivery in enumerate(run):
            event = events.get(delivery.event_cursor)
            if hook is None or event is None:
                await self._record([], (delivery, None, "event or webhook no longer exists", 0))
                continue
            status, error, duration_ms = await self._post(hook, event)
            if error is None:
                succeeded.append((delivery, status or 0, duration_ms))
                if len(succeeded) >= _RECORD_BATCH:
                    await self._record(succeeded, None)
                    succeeded = []
                continue
            await self._record(succeeded, (delivery, status, error, duration_ms))
            async with self._db() as db, db.begin():
                await release(db, DeliveryRow, [d.id for d in run[index + 1 :]], self._worker_id)
            return
        await self._record(succeeded, None)

    async def _post(self, hook: WebhookRow, event: EventRow) -> tuple[int | None, str | None, int]:
        """One signed POST: (status, error or None on a 2xx, milliseconds)."""
        body = orjson.dumps(from_row(event).envelope())
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
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets_, event.id, timestamp, body),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        if not self._allow_private and literal_forbidden(hook.url):
            error = "WEBHOOK_URL_FORBIDDEN: the URL is a forbidden address"
        else:
            assert self._http is not None
            try:
                async with self._http.post(hook.url, data=body, headers=headers) as response:
                    status = response.status
                    await response.read()
            except TimeoutError:
                error = f"no answer within {self._timeout_s:g}s"
            except (aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = int((time.perf_counter() - started) * 1000)
        if error is None and not (status is not None and 200 <= status < 300):
            error = f"HTTP {status}"
        return status, error, duration_ms

    async def _record(
        self,
        succeeded: list[tuple[DeliveryRow, int, int]],
        failure: tuple[DeliveryRow, int | None, str, int] | None,
    ) -> None:
        """Write the attempts: successes end their delivery; a failure retries or ends it."""
        if not succeeded and failure is None:
            return
        now = utcnow()
        async with self._db() as db, db.begin():
            for delivery, status, duration_ms in succeeded:
                row = await db.get(DeliveryRow, delivery.id)
                if row is not None:
                    self._attempt(db, row, now, status, None, duration_ms)
                    row.status = "succeeded"
            if failure is not None:
                delivery, status_code, error, duration_ms = failure
                row = await db.get(DeliveryRow, delivery.id)
                if row is None:
                    return
                self._attempt(db, row, now, status_code, error, duration_ms)
                gone = status_code is None and "no longer exists" in error
                if gone or row.attempts >= self._max_attempts:
                    row.status = "failed"
                else:
                    delay = min(self._backoff_base_s * 2 ** (row.attempts - 1), self._backoff_max_s)
                    row.next_attempt_at = now + timedelta(seconds=delay * random.uniform(0.8, 1.2))

    @staticmethod
    def _attempt(
        db: AsyncSession,
        row: DeliveryRow,
        now: datetime,
        status: int | None,
        error: str | None,
        duration_ms: int,
    ) -> None:
        row.attempts += 1
        row.last_status_code, row.last_error = status, error
        row.locked_until, row.updated_at = None, now
        db.add(
            DeliveryAttemptRow(
                delivery_id=row.id,
                attempt=row.attempts,
                at=now,
                status_code=status,
                error=error,
                duration_ms=duration_ms,
            )
        )


async def _first(a: Signal, b: Signal, timeout: float) -> None:
    """Wait until either signal fires, or `timeout`."""
    waits = [asyncio.ensure_future(a.wait(timeout)), asyncio.ensure_future(b.wait(timeout))]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
