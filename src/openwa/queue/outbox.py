"""Send jobs: written with the message, claimed with a lease, one session head at a time.

A job is claimable when it is due, its lease (or retry wait) has passed, its session is
ready here, and no unfinished job of the same session comes before it in due order
(`due_at`, then `id`). So sends keep per-session order by due time, a scheduled message
never holds back one due earlier, and a crashed worker's job is taken again once its
lease runs out. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite's writers are
serialised by `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from openwa.db.models import OutboxJobRow


def _is_postgres(db: AsyncSession) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def enqueue(
    db: AsyncSession, session_id: str, message_id: str, due_at: datetime, now: datetime
) -> None:
    db.add(
        OutboxJobRow(
            session_id=session_id,
            message_id=message_id,
            due_at=due_at,
            attempts=0,
            done=False,
            created_at=now,
        )
    )


async def claim(
    db: AsyncSession,
    sessions: Sequence[str],
    now: datetime,
    lease_s: float,
    worker: str,
    limit: int,
    per_session: int = 50,
) -> dict[str, list[OutboxJobRow]]:
    """Claim, per session, its head job and the due jobs right behind it, in order.

    Taking a run of a session's jobs at once (instead of only its head) lets one claim
    feed many sends; the caller sends each run in order and stops at a failure.
    """
    job = OutboxJobRow
    earlier = aliased(OutboxJobRow)
    blocked = exists().where(
        earlier.session_id == job.session_id,
        earlier.done.is_(False),
        or_(
            earlier.due_at < job.due_at,
            and_(earlier.due_at == job.due_at, earlier.id < job.id),
        ),
    )
    heads_query = (
        select(job)
        .where(
            job.done.is_(False),
            job.session_id.in_(sessions),
            job.due_at <= now,
            or_(job.locked_until.is_(None), job.locked_until < now),
            ~blocked,
        )
        .order_by(job.due_at, job.id)
        .limit(limit)
    )
    if _is_postgres(db):
        heads_query = heads_query.with_for_update(skip_locked=True, of=job)
    heads = list((await db.execute(heads_query)).scalars())
    runs: dict[str, list[OutboxJobRow]] = {}
    for head in heads:
        run_query = (
            select(job)
            .where(job.done.is_(False), job.session_id == head.session_id)
            .order_by(job.due_at, job.id)
            .limit(per_session)
        )
        if _is_postgres(db):
            run_query = run_query.with_for_update(skip_locked=True, of=job)
        run: list[OutboxJobRow] = []
        for candidate in (await db.execute(run_query)).scalars():
            locked = candidate.locked_until is not None and candidate.locked_until >= now
            if candidate.due_at > now or (locked and candidate.id != head.id):
                break
            run.append(candidate)
        if run and run[0].id == head.id:
            runs[head.session_id] = run
    claimed = [j.id for run in runs.values() for j in run]
    if claimed:
        await db.execute(
            update(job)
            .where(job.id.in_(claimed))
            .values(locked_until=now + timedelta(seconds=lease_s), locked_by=worker)
        )
    return runs


async def release(db: AsyncSession, job_ids: Sequence[int], worker: str) -> None:
    """Give back claimed jobs that were not attempted (they keep their place)."""
    if job_ids:
        await db.execute(
            update(OutboxJobRow)
            .where(OutboxJobRow.id.in_(job_ids), OutboxJobRow.locked_by == worker)
            .values(locked_until=None)
        )


async def job_for(db: AsyncSession, session_id: str, message_id: str) -> OutboxJobRow | None:
    query = select(OutboxJobRow).where(
        OutboxJobRow.session_id == session_id,
        OutboxJobRow.message_id == message_id,
        OutboxJobRow.done.is_(False),
    )
    if _is_postgres(db):
        query = query.with_for_update()
    return (await db.execute(query)).scalar_one_or_none()


async def waiting_too_long(
    db: AsyncSession, ready: Sequence[str], older_than: datetime, limit: int
) -> list[OutboxJobRow]:
    """Unfinished jobs due before `older_than` whose session is not ready here.

    Waiting counts from the due time, so a message scheduled for next week is not
    failed for its session being offline today.
    """
    query = select(OutboxJobRow).where(
        OutboxJobRow.done.is_(False), OutboxJobRow.due_at < older_than
    )
    if ready:
        query = query.where(OutboxJobRow.session_id.not_in(ready))
    return list((await db.execute(query.order_by(OutboxJobRow.id).limit(limit))).scalars())
