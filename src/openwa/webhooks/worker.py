"""Delivers webhook rows: signed POSTs with aiohttp, retried with backoff and jitter.

Deliveries to one webhook keep the order of a session's events: the claim hands out
only the oldest pending delivery of each (webhook, session) and the due ones right
behind it; while the oldest waits for a retry, the later ones wait too; once it has
failed for good, the next go on. `webhook-id` is the event id on every attempt, so
receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import timedelta

import aiohttp
import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa import __version__
from openwa.db.models import DeliveryAttemptRow, DeliveryRow, EventRow, WebhookRow
from openwa.events.log import EventLog, from_row
from openwa.kit.clock import utcnow
from openwa.kit.signal import Signal
from openwa.queue.claims import QueueSpec, claim_runs, release
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
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        resolver = None if self._allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(limit=200, resolver=resolver)
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"User-Agent": f"OpenWA/{__version__}"},
        )
        self._task = asyncio.create_task(self._run(), name="delivery-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
        for index, delivery in enumerate(run):
            if not await self._deliver(delivery):
                async with self._db() as db, db.begin():
                    await release(
                        db, DeliveryRow, [d.id for d in run[index + 1 :]], self._worker_id
                    )
                return

    async def _deliver(self, delivery: DeliveryRow) -> bool:
        """One attempt; whether it succeeded."""
        async with self._db() as db:
            hook = await db.get(WebhookRow, delivery.webhook_id)
            event = (
                await db.execute(select(EventRow).where(EventRow.cursor == delivery.event_cursor))
            ).scalar_one_or_none()
        if hook is None or event is None:
            await self._record(delivery, None, "event or webhook no longer exists", 0, final=True)
            return True
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
        ok = status is not None and 200 <= status < 300
        if not ok and error is None:
            error = f"HTTP {status}"
        await self._record(delivery, status, None if ok else error, duration_ms, final=ok)
        return ok

    async def _record(
        self,
        delivery: DeliveryRow,
        status: int | None,
        error: str | None,
        duration_ms: int,
        *,
        final: bool,
    ) -> None:
        now = utcnow()
        async with self._db() as db, db.begin():
            row = await db.get(DeliveryRow, delivery.id)
            if row is None:
                return
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
            if error is None:
                row.status = "succeeded"
            elif final or row.attempts >= self._max_attempts:
                row.status = "failed"
            else:
                delay = min(self._backoff_base_s * 2 ** (row.attempts - 1), self._backoff_max_s)
                row.next_attempt_at = now + timedelta(seconds=delay * random.uniform(0.8, 1.2))


async def _first(a: Signal, b: Signal, timeout: float) -> None:
    """Wait until either signal fires, or `timeout`."""
    waits = [asyncio.ensure_future(a.wait(timeout)), asyncio.ensure_future(b.wait(timeout))]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
