"""Periodic clean-up: the event log, delivery logs, idempotency keys and the audit log age
out, and stored files that belong to nothing are deleted (`media/sweep.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.audit.service import AuditService
from openwa.db.models import DeliveryRow, IdempotencyRow, MessageRow, PendingEditRow
from openwa.db.sqlite_driver import off_the_loop
from openwa.db.unit_of_work import unit_of_work
from openwa.events.log import EventLog
from openwa.kit.background import BackgroundTask
from openwa.kit.clock import utcnow
from openwa.media.sweep import ORPHAN_GRACE, MediaSweep
from openwa.messages.status import MessageStatus
from openwa.storage.base import Storage

log = structlog.get_logger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
# Listing every session's files is slow on a large store: live sessions' files that no
# message refers to are looked for this often, the first time an hour after the start
# (not at it: instances restarted together would all list at once).
SWEEP_LIVE_EVERY = timedelta(hours=6)
SWEEP_LIVE_FIRST = timedelta(hours=1)


class Maintenance:
    """Retention jobs; each step is one unit of work of its own (a batch of media, the
    prune of events and deliveries), so a failed step leaves the earlier ones done."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        storage: Storage,
        audit: AuditService,
        *,
        event_retention_days: int,
        message_retention_days: int,
        media_retention_days: int,
        audit_retention_days: int = 90,
        every_s: float = 600.0,
    ) -> None:
        self._db = db
        self._events = events
        self._storage = storage
        self._retention_days = event_retention_days
        self._message_days = message_retention_days
        self._media_days = media_retention_days
        self._audit = audit
        self._audit_days = audit_retention_days
        self._every_s = every_s
        self._loop = BackgroundTask("maintenance", self._run)
        self.media_sweep = MediaSweep(db, storage)
        self._swept_live_at = utcnow() - SWEEP_LIVE_EVERY + SWEEP_LIVE_FIRST

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("maintenance_failed")
            await asyncio.sleep(self._every_s)

    async def run_once(self) -> None:
        # Each step may touch many rows: on SQLite they run on the driver's thread, so
        # the event loop goes on meanwhile.
        with off_the_loop():
            await self._run_steps()

    async def _run_steps(self) -> None:
        now = utcnow()
        async with unit_of_work(self._db) as db:
            events = await self._events.prune(db, self._retention_days)
            cutoff = now - timedelta(days=self._retention_days)
            # By their last change: a delivery that failed for good today, after a long
            # wait behind a receiver that was down, stays in the log to be replayed.
            await db.execute(
                delete(DeliveryRow).where(
                    DeliveryRow.updated_at < cutoff, DeliveryRow.status != "pending"
                )
            )
            await db.execute(
                delete(IdempotencyRow).where(IdempotencyRow.created_at < now - IDEMPOTENCY_TTL)
            )
        if events:
            log.info("events_pruned", count=events)
        await self.prune_audit(now - timedelta(days=self._audit_days))
        await self.prune_media(now - timedelta(days=self._media_days))
        await self.prune_messages(now - timedelta(days=self._message_days))
        await self.media_sweep.empty_deleted(now)
        if now - self._swept_live_at >= SWEEP_LIVE_EVERY:
            self._swept_live_at = now  # a failed sweep too waits for the next turn
            await self.media_sweep.sweep_live(now - ORPHAN_GRACE)

    async def prune_audit(self, cutoff: datetime) -> int:
        """Delete audit entries older than `cutoff`."""
        async with unit_of_work(self._db) as db:
            removed = await self._audit.prune(db, cutoff)
        if removed:
            log.info("audit_pruned", count=removed)
        return removed

    async def prune_media(self, cutoff: datetime, batch: int = 500) -> int:
        """Delete stored media of messages older than `cutoff` (the messages stay)."""
        removed = 0
        while True:
            async with self._db() as db:
                rows = (
                    (
                        await db.execute(
                            select(MessageRow)
                            .where(MessageRow.media_key.is_not(None), _older_than(cutoff))
                            .limit(batch)
                        )
                    )
                    .scalars()
                    .all()
                )
            if not rows:
                return removed
            for row in rows:
                with contextlib.suppress(FileNotFoundError):
                    await self._storage.delete(row.media_key or "")
            async with unit_of_work(self._db) as db:
                for row in rows:
                    await db.execute(
                        update(MessageRow)
                        .where(MessageRow.session_id == row.session_id, MessageRow.id == row.id)
                        .values(media_key=None, content=_without_media(row.content))
                    )
            removed += len(rows)

    async def prune_messages(self, cutoff: datetime) -> int:
        """Delete messages older than `cutoff` (their media goes first)."""
        await self.prune_media(cutoff)
        async with unit_of_work(self._db) as db:
            result = await db.execute(delete(MessageRow).where(_older_than(cutoff)))
            # An edit whose message never came is given up with the messages of its age.
            await db.execute(delete(PendingEditRow).where(PendingEditRow.created_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _older_than(cutoff: datetime) -> ColumnElement[bool]:
    """Messages past a retention. A scheduled send is aged from when it is due, not from
    when it was accepted, and one still waiting to go is never past it: otherwise a send
    scheduled beyond the retention would lose its media, or itself, before its time."""
    return and_(
        MessageRow.timestamp < cutoff,
        # The later of the two: a `sendAt` in the past (sent at once) does not age it.
        or_(MessageRow.send_at.is_(None), MessageRow.send_at < cutoff),
        MessageRow.status != MessageStatus.PENDING.value,
    )


def _without_media(content: dict[str, Any]) -> dict[str, Any]:
    media = dict((content or {}).get("media") or {})
    media.pop("key", None)
    return {**content, "media": {**media, "deleted": True}} if media else dict(content)
