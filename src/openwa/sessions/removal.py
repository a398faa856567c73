"""A session's delete, in transactions short enough to share SQLite's one writer.

The session's row cascades to everything it has (messages, contacts, webhooks and their
deliveries...): deleted in one transaction, a session with a million messages held
SQLite's one writer for 9.4 s (16 s with longer messages), every other session's write
waiting behind it (past the writer pool's 60 s wait, they would fail), and left a -wal
file of hundreds of MB. So a delete goes in three steps (`remove`):

1. In the caller's unit of work, under the session's lock (after its logout):
   the session's tombstone (`media_tombstones`) is written, `session.deleted` logged,
   the name freed (the row takes its id as its name) and its webhooks switched off, in
   one commit. From then on the session is gone for the API: the session directory leaves out rows with a
   tombstone, here at once and on other instances at their next read of the row (they
   are told, as of any change of it); a second DELETE, a start, a send find no session.
2. Its rows go a batch at a time (`db/batches.py`), each batch its own transaction:
   its queued sends' jobs, messages, pending edits, contacts, its webhooks' deliveries
   (and their attempts) and the engine reports set aside for it.
3. The row, in one transaction as before, with what the batches left: what refers to
   it and is small (its auth state, lease, webhooks) and what was written meanwhile by a
   call that had looked the session up before step 1 (a send accepted then: its message
   by the cascade, its job by `outbox.drop_session`). The tombstone's time moves on: maintenance empties the session's prefix in
   the store 10 minutes after (`media/sweep.py`).

A delete cut short after step 1 (the process killed, the request cancelled, the
database failing) leaves the row with its tombstone: hidden from the API, its name
free for a new session. Maintenance finishes it at its next run, which is at once at a start and
every 10 minutes after (`finish_left`); a tombstone whose row is still there is not
swept. Steps 2 and 3 may run twice at once (another instance's maintenance, in a
cluster): each batch deletes what is still there, and only one of them finds the row.
"""

from __future__ import annotations

from functools import partial

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.batches import PRUNE_BATCH, Prune, delete_in_batches
from openwa.db.models import (
    ContactRow,
    DeliveryRow,
    MediaTombstoneRow,
    MessageRow,
    PendingEditRow,
    SessionRow,
    SetAsideReportRow,
    WebhookRow,
)
from openwa.db.retry import again_if_deadlocked
from openwa.db.sqlite_driver import off_the_loop
from openwa.db.unit_of_work import commit, unit_of_work
from openwa.errors import SessionNotFound
from openwa.events.log import EventLog
from openwa.kit.clock import utcnow
from openwa.media.sweep import MediaTombstones
from openwa.queue import outbox
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.records import SessionRecords
from openwa.sessions.repository import SessionRepository

log = structlog.get_logger(__name__)


def rows_of(session_id: str) -> list[Prune]:
    """What a session has that may be large, in the order its delete takes it: its jobs
    before its messages, as the send worker locks them. Each walks an index that starts
    with the session (or its webhooks), and deletes by a key that index finds."""
    own_webhooks = select(WebhookRow.id).where(WebhookRow.session_id == session_id)
    return [
        outbox.of_session(session_id),
        Prune([MessageRow.id], [MessageRow.session_id == session_id]),
        Prune([PendingEditRow.message_id], [PendingEditRow.session_id == session_id]),
        Prune([ContactRow.chat_id], [ContactRow.session_id == session_id]),
        # Its own webhooks' deliveries (their attempts cascade); an instance-wide
        # webhook's deliveries of its events stay (`session.deleted` among them).
        Prune(
            [DeliveryRow.webhook_id, DeliveryRow.created_at, DeliveryRow.id],
            [DeliveryRow.webhook_id.in_(own_webhooks)],
            by_last=True,
        ),
        # No foreign key holds these to the session.
        Prune([SetAsideReportRow.id], [SetAsideReportRow.session_id == session_id]),
    ]


class SessionRemoval:
    """Deletes sessions as the module says. `batch`: rows per transaction (tests lower it)."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        directory: SessionDirectory,
        *,
        read: async_sessionmaker[AsyncSession] | None = None,
        batch: int = PRUNE_BATCH,
    ) -> None:
        """`read`: the reader beside the writer (the writer itself by default)."""
        self._db = db
        self._read = read or db
        self._records = SessionRecords(events)
        self._directory = directory
        self.batch = batch
        # Sessions whose rows this instance is deleting now (maintenance leaves them).
        self._removing: set[str] = set()

    async def remove(self, db: AsyncSession, session_id: str) -> None:
        """Delete the session (under its lock, after its logout): `begin` in `db`, the
        caller's unit of work, then the rest. The session is deleted once `begin` has
        committed; should the rest fail, that is logged and left to maintenance."""
        self._removing.add(session_id)
        try:
            await again_if_deadlocked(
                partial(self._begin, db, session_id),
                event="session_delete_retried",
                db=db,
                session_id=session_id,
            )
            try:
                await self.finish(session_id)
            except Exception:
                log.exception("session_delete_unfinished", session_id=session_id)
        finally:
            self._removing.discard(session_id)

    async def _begin(self, db: AsyncSession, session_id: str) -> None:
        # Held: a delete begun on another instance meanwhile is waited for, and seen.
        row = await SessionRepository(db).get_held(session_id, held="to change")
        tombstones = MediaTombstones(db)
        if row is None or await tombstones.get(session_id) is not None:
            # Deleted meanwhile, or being deleted (another DELETE, which held the lock
            # first, or another instance's).
            raise SessionNotFound(details={"session": session_id})
        await tombstones.remember(session_id, utcnow())
        # Gone for clients from this commit on: announced now, under its name; the name
        # freed at once (the row keeps its id in its place: no name may start `ses_`);
        # its webhooks stop (their deliveries go with the rows; a delete cut short would
        # have kept posting them until maintenance finished it).
        await self._records.deleted(db, row)
        row.name = row.id
        await db.execute(
            update(WebhookRow).where(WebhookRow.session_id == session_id).values(active=False)
        )
        self._directory.hide(db, session_id)
        await commit(db)

    async def finish(self, session_id: str) -> bool:
        """Delete the rows of a session whose delete has begun, a batch at a time, then
        its row; whether this call deleted the row (False: another had)."""
        counts: dict[str, int] = {}
        # Many rows: on SQLite the statements run on the driver's thread, so the event
        # loop goes on meanwhile.
        with off_the_loop():
            for prune in rows_of(session_id):
                table = prune.keys[0].table.name
                counts[table] = await delete_in_batches(
                    self._db,
                    self._read,
                    prune,
                    self.batch,
                    retried="session_rows_delete_retried",
                    session_id=session_id,
                    table=table,
                )
            # The cascade reaches what the workers lock as they record (a delivery, a
            # message being sent, written meanwhile): on PostgreSQL it may lose a
            # deadlock to them, and is then done again.
            deleted = await again_if_deadlocked(
                partial(self._delete_row, session_id),
                event="session_delete_retried",
                session_id=session_id,
            )
        if deleted:
            log.info(
                "session_rows_deleted",
                session_id=session_id,
                **{table: count for table, count in counts.items() if count},
            )
        return deleted

    async def _delete_row(self, session_id: str) -> bool:
        async with unit_of_work(self._db) as db:
            repo = SessionRepository(db)
            row = await repo.get_held(session_id, held="to change")
            if row is None:
                return False
            # Its jobs before it, as the send worker takes them (its event was logged
            # when the delete began: no event counter's lock is held here while the
            # cascade waits for a send being recorded, which appends events next).
            await outbox.lock_session(db, row.id)
            await repo.delete(row)
            # After the row: a send accepted meanwhile has its job by then.
            await outbox.drop_session(db, row.id)
            await db.execute(
                delete(SetAsideReportRow).where(SetAsideReportRow.session_id == row.id)
            )
            # Its files are deleted after the commit; should that fail or be cut short,
            # maintenance empties the prefix again 10 minutes after this.
            await MediaTombstones(db).remember(row.id, utcnow())
        return True

    async def finish_left(self) -> int:
        """Finish the deletes that were cut short: sessions whose row is still there
        beside their tombstone, but those this instance is deleting now. Sessions
        finished; one that fails is logged, and the others go on."""
        async with self._read() as read:
            left = list(
                (
                    await read.execute(
                        select(MediaTombstoneRow.session_id)
                        .join(SessionRow, SessionRow.id == MediaTombstoneRow.session_id)
                        .order_by(MediaTombstoneRow.deleted_at)
                    )
                ).scalars()
            )
        finished = 0
        for session_id in left:
            if session_id in self._removing:
                continue
            self._removing.add(session_id)
            try:
                if await self.finish(session_id):
                    finished += 1
                    log.info("session_delete_finished", session_id=session_id)
            except Exception:
                log.exception("session_delete_unfinished", session_id=session_id)
            finally:
                self._removing.discard(session_id)
        return finished
