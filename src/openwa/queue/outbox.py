"""Send jobs: written with the message, claimed with a lease, in due order per session.

A session's jobs go in order of due time (`due_at`, then `id`), so a scheduled message
never holds back one due earlier; a job waiting for a retry (its lease doubles as the
wait) holds back the session's later ones. See `queue.claims` for the claim rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import table_of
from openwa.db.batches import Prune
from openwa.db.engine import is_postgres, stage_insert
from openwa.db.models import OutboxJobRow, SessionRow
from openwa.queue.claims import QueueSpec, claim_runs
from openwa.queue.claims import release as release_rows


def enqueue(
    db: AsyncSession, session_id: str, message_id: str, due_at: datetime, now: datetime
) -> None:
    """A send job, written when the transaction commits (see `stage_insert`)."""
    stage_insert(
        db,
        table_of(OutboxJobRow),
        {
            "session_id": session_id,
            "message_id": message_id,
            "due_at": due_at,
            "attempts": 0,
            "done": False,
            "created_at": now,
        },
    )


SENDS = QueueSpec(
    model=OutboxJobRow,
    group=lambda t: [t.session_id],
    order=lambda t: [t.due_at, t.id],
    pending=lambda t: t.done.is_(False),
    due_at=lambda t: t.due_at,
)


async def claim(
    db: AsyncSession,
    sessions: Sequence[str],
    now: datetime,
    lease_s: float,
    worker: str,
    limit: int,
    per_session: int = 500,
) -> list[list[OutboxJobRow]]:
    """Runs of due send jobs, one run per ready session, each in due order."""
    return await claim_runs(
        db,
        SENDS,
        scope=[OutboxJobRow.session_id.in_(sessions)],
        now=now,
        lease_s=lease_s,
        worker=worker,
        limit=limit,
        per_group=per_session,
    )


# The send worker looks for due sends at least this often. A send due sooner than that
# wakes it when accepted; one due later is found by its next look, which then waits
# until exactly its due time.
LOOK_EVERY_S = 0.5


async def next_due(db: AsyncSession, sessions: Sequence[str], after: datetime) -> datetime | None:
    """When the next pending job of these sessions falls due, if later than `after`."""
    query = select(func.min(OutboxJobRow.due_at)).where(
        OutboxJobRow.done.is_(False),
        OutboxJobRow.session_id.in_(sessions),
        OutboxJobRow.due_at > after,
    )
    due: datetime | None = (await db.execute(query)).scalar_one_or_none()
    return due


async def release(db: AsyncSession, jobs: Sequence[OutboxJobRow], worker: str) -> None:
    """Give back jobs this run did not attempt. Those handed over only in this run never
    reached the engine: no longer in doubt. One handed over in an earlier run (cut short
    by a crash or a stop) stays in doubt, whatever stopped this run from trying it (its
    session not ready, or held back)."""
    fresh = [job.id for job in jobs if job.handed_at is None]
    in_doubt = [job.id for job in jobs if job.handed_at is not None]
    await release_rows(db, OutboxJobRow, fresh, worker, handed_at=None)
    await release_rows(db, OutboxJobRow, in_doubt, worker)


async def job_for(db: AsyncSession, session_id: str, message_id: str) -> OutboxJobRow | None:
    query = select(OutboxJobRow).where(
        OutboxJobRow.session_id == session_id,
        OutboxJobRow.message_id == message_id,
        OutboxJobRow.done.is_(False),
    )
    if is_postgres(db):
        query = query.with_for_update()
    return (await db.execute(query)).scalar_one_or_none()


async def waiting_too_long(
    db: AsyncSession, ready: Sequence[str], older_than: datetime, limit: int
) -> list[OutboxJobRow]:
    """Unfinished jobs due before `older_than` whose session is not ready here, locked
    for the caller's transaction.

    Waiting counts from the due time, so a message scheduled for next week is not
    failed for its session being offline today. On PostgreSQL the rows are claimed
    with `FOR UPDATE SKIP LOCKED`: a sweep of another instance running at the same
    time takes the others, and no job is finished (nor its message failed) twice.
    """
    query = select(OutboxJobRow).where(
        OutboxJobRow.done.is_(False), OutboxJobRow.due_at < older_than
    )
    if ready:
        query = query.where(OutboxJobRow.session_id.not_in(ready))
    query = query.order_by(OutboxJobRow.id).limit(limit)
    if is_postgres(db):
        query = query.with_for_update(skip_locked=True)
    return list((await db.execute(query)).scalars())


async def take_back(db: AsyncSession, session_id: str, worker: str) -> None:
    """The session's new owner (`worker`) takes back the sends another instance had
    claimed for it: that instance may not send for it any more (its lease is gone), and
    its claims would hold the session's queue until they ran out (a minute). A job
    given back may have been handed to the engine already: it goes again under the
    same id (recipients drop a repeat), or fails as SEND_OUTCOME_UNKNOWN where the
    engine cannot resend safely."""
    await db.execute(
        update(OutboxJobRow)
        .where(
            OutboxJobRow.session_id == session_id,
            OutboxJobRow.done.is_(False),
            OutboxJobRow.locked_until.is_not(None),
            OutboxJobRow.locked_by != worker,
        )
        .values(locked_until=None)
    )


def _of_session(session_id: str) -> list[ColumnElement[bool]]:
    # `done` named too, so the queue's index (done, session_id, ...) finds them.
    return [OutboxJobRow.done.in_([False, True]), OutboxJobRow.session_id == session_id]


async def lock_session(db: AsyncSession, session_id: str) -> None:
    """Lock a session's jobs before its row (and, by cascade, its messages) is deleted:
    the send worker records a run jobs first, then messages, and a delete taking them
    the other way round deadlocked with it (PostgreSQL)."""
    if is_postgres(db):
        await db.execute(
            select(OutboxJobRow.id)
            .where(*_of_session(session_id))
            .order_by(OutboxJobRow.id)
            .with_for_update()
        )


async def drop_session(db: AsyncSession, session_id: str) -> None:
    """A deleted session's jobs, in the delete's unit of work: no foreign key holds them
    to the session (the queue is claimed by session id alone), and nothing else would
    ever end them: they stayed for good."""
    await db.execute(delete(OutboxJobRow).where(*_of_session(session_id)))


def of_session(session_id: str) -> Prune:
    """A deleted session's jobs, for its delete to take a batch at a time before its row
    (`drop_session` takes what a send accepted meanwhile left, with the row)."""
    keys = [OutboxJobRow.done, OutboxJobRow.due_at, OutboxJobRow.id]  # the queue's index
    return Prune(keys, _of_session(session_id), by_last=True)


def finished(before: datetime) -> Prune:
    """Jobs done before `before`, and jobs of sessions that are gone (left by deletes
    before `drop_session`): nothing reads either again (every query of the queue asks
    for jobs not done), and the table grew by a row per message sent, for good."""
    return Prune(
        [OutboxJobRow.id],
        [OutboxJobRow.created_at < before],
        [OutboxJobRow.done.is_(True) | ~exists().where(SessionRow.id == OutboxJobRow.session_id)],
    )
