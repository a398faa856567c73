"""Session leases and instance rows: the SQL of ownership, in the caller's transaction.

A lease says which instance may connect a session, until when, and under which epoch.
Taking one over bumps its epoch, in one statement (an upsert whose update is allowed
only when the lease is free), so two instances can never both come away owning a
session: the database decides, not a read followed by a write.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, false, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.engine import is_postgres
from openwa.db.models import InstanceRow, SessionLeaseRow, SessionRow


class LeaseLost(Exception):
    """The session's lease is no longer this instance's (under the epoch it was given)."""


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    epoch: int
    expires_at: datetime


def _lease(row: SessionLeaseRow) -> Lease:
    return Lease(row.session_id, row.owner, row.epoch, row.expires_at)


async def take(
    db: AsyncSession,
    session_id: str,
    owner: str,
    *,
    now: datetime,
    lease_s: float,
    dead: Collection[str] | None,
) -> int | None:
    """Own `session_id` if its lease is free: none yet, run out, or held by an instance
    in `dead` (`None`: every other owner counts as dead, as on a single instance). The
    new epoch, or None when a live instance holds it."""
    table = SessionLeaseRow
    values = {"session_id": session_id, "owner": owner, "epoch": 1}
    free = (
        true()
        if dead is None
        else or_(table.expires_at < now, table.owner.in_(list(dead)) if dead else false())
    )
    dialect = postgresql if is_postgres(db) else sqlite
    statement = dialect.insert(table).values(**values, expires_at=now + timedelta(seconds=lease_s))
    statement = statement.on_conflict_do_update(
        index_elements=[table.session_id],
        set_={
            "owner": owner,
            "epoch": table.epoch + 1,
            "expires_at": statement.excluded.expires_at,
        },
        where=free,
    ).returning(table.epoch)
    return (await db.execute(statement)).scalar_one_or_none()


async def confirm(db: AsyncSession, session_id: str, owner: str, epoch: int) -> None:
    """In the caller's transaction: `owner` still holds the lease under `epoch`, and a
    takeover waits for this transaction to end (a share lock on the row; PostgreSQL).
    Raises `LeaseLost`."""
    table = SessionLeaseRow
    query = select(table.owner, table.epoch).where(table.session_id == session_id)
    if is_postgres(db):
        query = query.with_for_update(read=True)
    found = (await db.execute(query)).one_or_none()
    if found is None or tuple(found) != (owner, epoch):
        raise LeaseLost(session_id)


async def renew(
    db: AsyncSession, owner: str, session_ids: Sequence[str], *, now: datetime, lease_s: float
) -> dict[str, int]:
    """Extend `owner`'s leases on `session_ids`; the epoch of each still held. One that
    is missing, or whose epoch moved, was taken over: its owner must drop it."""
    if not session_ids:
        return {}
    table = SessionLeaseRow
    result = await db.execute(
        update(table)
        .where(table.owner == owner, table.session_id.in_(list(session_ids)))
        .values(expires_at=now + timedelta(seconds=lease_s))
        .returning(table.session_id, table.epoch)
    )
    return {session_id: epoch for session_id, epoch in result.all()}


async def release(
    db: AsyncSession, owner: str, session_ids: Sequence[str] | None, *, now: datetime
) -> None:
    """Let others take `owner`'s leases at once (all of them when `session_ids` is None);
    the epoch stays, so the next owner's is still higher."""
    table = SessionLeaseRow
    query = update(table).where(table.owner == owner)
    if session_ids is not None:
        query = query.where(table.session_id.in_(list(session_ids)))
    await db.execute(query.values(expires_at=now - timedelta(seconds=1)))


async def leases(db: AsyncSession) -> list[Lease]:
    rows = (await db.execute(select(SessionLeaseRow))).scalars().all()
    return [_lease(row) for row in rows]


async def wanted(db: AsyncSession) -> list[str]:
    """Sessions that should run, whatever their lease says."""
    found = await db.execute(select(SessionRow.id).where(SessionRow.should_run.is_(True)))
    return list(found.scalars())


async def heartbeat(
    db: AsyncSession,
    instance_id: str,
    url: str,
    *,
    now: datetime,
    started_at: datetime,
    max_sessions: int,
    running: int,
    draining: bool,
) -> None:
    """This instance's row, written afresh each round (it is its own only writer)."""
    dialect = postgresql if is_postgres(db) else sqlite
    values = {
        "url": url,
        "last_seen": now,
        "max_sessions": max_sessions,
        "running": running,
        "draining": draining,
    }
    statement = dialect.insert(InstanceRow).values(id=instance_id, started_at=started_at, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[InstanceRow.id], set_={**values, "started_at": started_at}
    )
    await db.execute(statement)


async def instances(db: AsyncSession) -> list[InstanceRow]:
    rows = await db.execute(select(InstanceRow).order_by(InstanceRow.started_at, InstanceRow.id))
    return list(rows.scalars())


async def leave(db: AsyncSession, instance_id: str) -> None:
    await db.execute(delete(InstanceRow).where(InstanceRow.id == instance_id))


async def forget_instances(db: AsyncSession, ids: Collection[str]) -> None:
    """Drop the rows of instances long gone (their leases stay until taken over)."""
    if ids:
        await db.execute(delete(InstanceRow).where(InstanceRow.id.in_(list(ids))))
