"""Periodic clean-up: the event log, delivery logs, idempotency keys and the audit log age
out, session deletes cut short are finished (`sessions/removal.py`), and stored files
that belong to nothing are deleted (`media/sweep.py`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.audit.service import AuditService
from openwa.db.batches import PRUNE_BATCH, Prune, delete_in_batches
from openwa.db.engine import transient
from openwa.db.models import (
    DeliveryRow,
    IdempotencyRow,
    MessageRow,
    PendingEditRow,
    SetAsideReportRow,
)
from openwa.db.sqlite_driver import off_the_loop
from openwa.db.unit_of_work import unit_of_work
from openwa.events.log import EventLog
from openwa.kit.background import BackgroundTask
from openwa.kit.clock import utcnow
from openwa.media.sweep import ORPHAN_GRACE, MediaSweep
from openwa.messages.status import MessageStatus
from openwa.queue import outbox
from openwa.sessions.removal import SessionRemoval
from openwa.storage.base import Storage
from openwa.storage.keys import profile_key

log = structlog.get_logger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
# Listing every session's files is slow on a large store: live sessions' files that no
# message refers to are looked for this often, the first time an hour after the start
# (not at it: instances restarted together would all list at once).
SWEEP_LIVE_EVERY = timedelta(hours=6)
SWEEP_LIVE_FIRST = timedelta(hours=1)


_IDEMPOTENCY_KEY = [IdempotencyRow.api_key_id, IdempotencyRow.session_id, IdempotencyRow.key]
_MESSAGE_KEY = [MessageRow.session_id, MessageRow.id]
_PENDING_EDIT_KEY = [PendingEditRow.session_id, PendingEditRow.message_id]
_SET_ASIDE_KEY = [SetAsideReportRow.id]
# A file's delete waits this long for the storage (a hung S3 request holds no batch up).
_DELETE_TIMEOUT_S = 30.0


class Maintenance:
    """Retention jobs; each step is units of work of its own (a batch of media, of
    events, of deliveries...), so a failed step leaves the earlier ones done, and the
    later ones run all the same."""

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
        read: async_sessionmaker[AsyncSession] | None = None,
        removal: SessionRemoval | None = None,
    ) -> None:
        """`read`: the reader beside the writer (the writer itself by default);
        `removal`: what finishes the session deletes cut short."""
        self._db = db
        self._removal = removal
        self._read = read or db
        self._events = events
        self._storage = storage
        self._retention_days = event_retention_days
        self._message_days = message_retention_days
        self._media_days = media_retention_days
        self._audit = audit
        self._audit_days = audit_retention_days
        self._every_s = every_s
        # Rows per batch of a clean-up (db/batches.py); tests lower it.
        self.prune_batch = prune_batch
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
        """Each step on its own: one that fails (a file the storage will not delete, a
        table locked) is logged and the others still run, this time and every time;
        before, the first failure ended the run, and a file that could not be deleted
        stopped every later clean-up for good."""
        now = utcnow()
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("events", self._prune_events),
            ("deliveries", partial(self._prune_deliveries, now)),
            (
                "idempotency_keys",
                partial(
                    self._in_batches,
                    Prune(_IDEMPOTENCY_KEY, [IdempotencyRow.created_at < now - IDEMPOTENCY_TTL]),
                ),
            ),
            # Sends done a day ago: their messages keep what happened.
            ("outbox", partial(self._in_batches, outbox.finished(now - IDEMPOTENCY_TTL))),
            ("audit", partial(self.prune_audit, now - timedelta(days=self._audit_days))),
            ("media", partial(self.prune_media, now - timedelta(days=self._media_days))),
            ("messages", partial(self.prune_messages, now - timedelta(days=self._message_days))),
            # Reports set aside hold what the messages held: they age with them.
            (
                "set_aside_reports",
                partial(
                    self._in_batches,
                    Prune(
                        _SET_ASIDE_KEY,
                        [SetAsideReportRow.created_at < now - timedelta(days=self._message_days)],
                    ),
                ),
            ),
            # Before the sweep of deleted sessions' files, which waits for their rows.
            ("deleted_sessions", self._finish_deletes),
            ("deleted_sessions_files", partial(self.media_sweep.empty_deleted, now)),
        ]
        if now - self._swept_live_at >= SWEEP_LIVE_EVERY:
            self._swept_live_at = now  # a failed sweep too waits for the next turn
            steps.append(("live_files", partial(self.media_sweep.sweep_live, now - ORPHAN_GRACE)))
        for name, step in steps:
            try:
                await step()
            except Exception as exc:
                if transient(exc):
                    # The database is away (or busy past its wait): every later step
                    # would fail the same way, each with its traceback and its own wait
                    # for a connection. Said once; the next run tries them all again.
                    log.warning("maintenance_put_off", step=name, error=repr(exc)[:500])
                    return
                log.exception("maintenance_step_failed", step=name)

    async def _finish_deletes(self) -> None:
        if self._removal is not None:
            await self._removal.finish_left()

    async def _prune_events(self) -> None:
        async with self._read() as read:
            prunable = await self._events.prunable(read, self._retention_days)
        events = await self._in_batches(prunable)
        if events:
            log.info("events_pruned", count=events)

    async def _prune_deliveries(self, now: datetime) -> None:
        cutoff = now - timedelta(days=self._retention_days)
        # By their last change: a delivery that failed for good today, after a long
        # wait behind a receiver that was down, stays in the log to be replayed.
        ended = [DeliveryRow.updated_at < cutoff, DeliveryRow.status != "pending"]
        await self._in_batches(Prune([DeliveryRow.id], ended))

    async def _in_batches(self, prune: Prune) -> int:
        """Delete what `prune` names a batch at a time (db/batches.py): each batch's keys
        read beside the writer, then deleted in a unit of work of its own. Rows deleted."""
        return await delete_in_batches(self._db, self._read, prune, self.prune_batch)

    async def prune_audit(self, cutoff: datetime) -> int:
        """Delete audit entries older than `cutoff`."""
        removed = await self._in_batches(self._audit.prunable(cutoff))
        async with unit_of_work(self._db) as db:
            await self._audit.prune_pairs(db, cutoff)
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
            shared = await self._shared_keys(rows)
            for row in rows:
                # A message stored before inbound media had keys of its own may name
                # the session's saved profile (a document under the id `webjs_profile`),
                # or share its file with a newer message (ids alike but for punctuation):
                # its reference goes, the file stays.
                if row.media_key != profile_key(row.session_id) and row.media_key not in shared:
                    await self._delete_file(row.media_key or "")
            async with unit_of_work(self._db) as db:
                for row in rows:
                    await db.execute(
                        update(MessageRow)
                        .where(MessageRow.session_id == row.session_id, MessageRow.id == row.id)
                        .values(media_key=None, content=_without_media(row.content))
                    )
            removed += len(rows)

    async def _shared_keys(self, rows: Sequence[MessageRow]) -> set[str]:
        """The keys of `rows` that other messages than these name too."""
        in_batch = Counter(row.media_key for row in rows if row.media_key)
        async with self._read() as read:
            found = await read.execute(
                select(MessageRow.media_key, func.count())
                .where(MessageRow.media_key.in_(list(in_batch)))
                .group_by(MessageRow.media_key)
            )
            return {key for key, count in found.all() if key and count > in_batch[key]}

    async def _delete_file(self, key: str) -> None:
        """Delete a message's file; one the storage refuses (a bucket policy without
        delete, an object lock, a file owned by another user) or does not answer is
        logged and left to the sweep of files no message refers to (`media/sweep.py`),
        since its message lets go of it all the same: kept, it would be picked first
        by every later batch, and nothing behind it would ever be pruned."""
        try:
            async with asyncio.timeout(_DELETE_TIMEOUT_S):
                await self._storage.delete(key)
        except FileNotFoundError:
            pass
        except Exception:
            log.warning("media_delete_failed", key=key, exc_info=True)

    async def prune_messages(self, cutoff: datetime) -> int:
        """Delete messages older than `cutoff` (their media goes first)."""
        await self.prune_media(cutoff)
        removed = await self._in_batches(Prune(_MESSAGE_KEY, [_older_than(cutoff)]))
        # An edit whose message never came is given up with the messages of its age.
        edits = [PendingEditRow.created_at < cutoff]
        await self._in_batches(Prune(_PENDING_EDIT_KEY, edits))
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
