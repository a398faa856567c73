"""Periodic clean-up: the event log, delivery logs and idempotency keys age out."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import DeliveryRow, IdempotencyRow
from openwa.events.log import EventLog
from openwa.kit.clock import utcnow

log = structlog.get_logger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)


class Maintenance:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        *,
        event_retention_days: int,
        every_s: float = 600.0,
    ) -> None:
        self._db = db
        self._events = events
        self._retention_days = event_retention_days
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("maintenance_failed")
            await asyncio.sleep(self._every_s)

    async def run_once(self) -> None:
        now = utcnow()
        async with self._db() as db, db.begin():
            events = await self._events.prune(db, self._retention_days)
            cutoff = now - timedelta(days=self._retention_days)
            await db.execute(
                delete(DeliveryRow).where(
                    DeliveryRow.created_at < cutoff, DeliveryRow.status != "pending"
                )
            )
            await db.execute(
                delete(IdempotencyRow).where(IdempotencyRow.created_at < now - IDEMPOTENCY_TTL)
            )
        if events:
            log.info("events_pruned", count=events)
