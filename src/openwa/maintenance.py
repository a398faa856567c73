"""Periodic clean-up: the event log, delivery logs, idempotency keys and the audit log age
out, and stored files that belong to nothing are deleted (`media/sweep.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

import structlog
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.audit.service import AuditService
from openwa.db.batches import PRUNE_BATCH, Key, delete_some
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


class BatchStep(Protocol):
    """One batch of a batched delete (`delete_some` with its table and condition bound)."""

    def __call__(
        self, db: AsyncSession, *, limit: int, after: Key | None
    ) -> Awaitable[tuple[int, Key | None]]: ...


_IDEMPOTENCY_KEY = [IdempotencyRow.api_key_id, IdempotencyRow.session_id, IdempotencyRow.key]
_MESSAGE_KEY = [MessageRow.session_id, MessageRow.id]
_PENDING_EDIT_KEY = [PendingEditRow.session_id, PendingEditRow.message_id]


class Maintenance:
    """Retention jobs; each step is units of work of its own (a batch of media, of
    events, of deliveries...), so a failed step leaves the earlier ones done."""

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
        prune_batch: int = PRUNE_BATCH,
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
        self._batch = prune_batch
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
        days = self._retention_days
        events = await self._in_batches(partial(self._events.prune, retention_days=days))
        if events:
            log.info("events_pruned", count=events)
        cutoff = now - timedelta(days=days)
        # By their last change: a delivery that failed for good today, after a long
        # wait behind a receiver that was down, stays in the log to be replayed.
        ended = [DeliveryRow.updated_at < cutoff, DeliveryRow.status != "pending"]
        await self._in_batches(partial(delete_some, keys=[DeliveryRow.id], where=ended))
        expired = [IdempotencyRow.created_at < now - IDEMPOTENCY_TTL]
        await self._in_batches(partial(delete_some, keys=_IDEMPOTENCY_KEY, where=expired))
        await self.prune_audit(now - timedelta(days=self._audit_days))
        await self.prune_media(now - timedelta(days=self._media_days))
        await self.prune_messages(now - timedelta(days=self._message_days))
        await self.media_sweep.empty_deleted(now)
        if now - self._swept_live_at >= SWEEP_LIVE_EVERY:
            self._swept_live_at = now  # a failed sweep too waits for the next turn
            await self.media_sweep.sweep_live(now - ORPHAN_GRACE)

    async def _in_batches(self, step: BatchStep) -> int:
        """Run a batched delete (db/batches.py) to its end, each batch in a unit of work
        of its own: rows deleted."""
        removed, after = 0, None
        while True:
            async with unit_of_work(self._db) as db:
                done, after = await step(db, limit=self._batch, after=after)
            removed += done
            if after is None:
                return removed
            # Whoever waits for the writer (on SQLite, every other write) goes first.
            await asyncio.sleep(0)

    async def prune_audit(self, cutoff: datetime) -> int:
        """Delete audit entries older than `cutoff`."""
        removed = await self._in_batches(partial(self._audit.prune, cutoff=cutoff))
        async with unit_of_work(self._db) as db:
            await self._audit.prune_pairs(db)
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
        old = [_older_than(cutoff)]
        removed = await self._in_batches(partial(delete_some, keys=_MESSAGE_KEY, where=old))
        # An edit whose message never came is given up with the messages of its age.
        edits = [PendingEditRow.created_at < cutoff]
        await self._in_batches(partial(delete_some, keys=_PENDING_EDIT_KEY, where=edits))
        return removed


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
