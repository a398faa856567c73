"""Ownership on the real PostgreSQL: renewals never wait behind take-overs, and a paused
owner's open transaction never holds a take-over up.

Found by the three-instance tests: after a `kill -9`, each survivor took the dead
instance's sessions one start at a time in the same loop that renews its own leases; a
few slow starts and its own leases lapsed (the process fenced its own sessions), the
others took those, and the cluster thrashed for a minute. Here one member with a
session of its own finds orphans whose starts are slow (longer, together, than its
lease): it must take them all and keep its own session throughout.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster import leases
from openwa.cluster.ownership import Ownership
from openwa.db.engine import create_engine
from openwa.db.instance_lock import member_lock
from openwa.db.models import SessionLeaseRow
from openwa.kit.clock import utcnow
from tests.cluster.support import Recorder, wanted_sessions

pytestmark = pytest.mark.postgres

LEASE_S = 3.0
START_S = 0.5  # one take-over's start: eight of them outlast the lease
ORPHANS = 8


class SlowStarts(Recorder):
    """The runtime as ownership sees it, with starts that take `START_S` each."""

    async def take_over(self, session_id: str, reason: str) -> None:
        await self.ownership.acquire(session_id)
        await asyncio.sleep(START_S)
        self.running.add(session_id)


async def _leased(db: async_sessionmaker[AsyncSession], prefix: str, owner: str) -> str:
    """A session that should run, leased to `owner`."""
    (sid,) = await wanted_sessions(db, 1, prefix)
    async with db() as session, session.begin():
        await leases.take(session, sid, owner, now=utcnow(), lease_s=LEASE_S, dead=None)
    return sid


async def test_renewals_go_on_while_slow_take_overs_run(
    db: async_sessionmaker[AsyncSession], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("openwa.cluster.ownership.TAKE_AT_ONCE", 1)  # one start at a time
    (own,) = await wanted_sessions(db, 1, "own")
    member = member_lock(postgres_url, "x")
    await member.acquire()
    ownership = Ownership(db, "x", "http://x", lease_s=LEASE_S, max_sessions=100, clustered=True)
    runtime = SlowStarts(ownership, max_sessions=100)
    await ownership.acquire(own)
    runtime.running.add(own)
    await ownership.start()
    try:
        # Orphans that appear once the member runs (a dead instance's, say).
        orphans = await wanted_sessions(db, ORPHANS, "orphan")
        deadline = asyncio.get_running_loop().time() + ORPHANS * START_S + 3 * LEASE_S
        while not runtime.running >= {own, *orphans}:
            assert asyncio.get_running_loop().time() < deadline, runtime.running
            await asyncio.sleep(0.1)
        assert runtime.fenced == []
        assert ownership.holds(own)
    finally:
        await ownership.drain()
        await ownership.leave()
        await member.release()


async def test_a_transaction_left_open_by_a_paused_owner_ends_with_the_lease(
    db: async_sessionmaker[AsyncSession], postgres_url: str
) -> None:
    sid = await _leased(db, "paused", "p")
    # The paused owner: in the middle of a renewal (its lease row locked), then frozen.
    paused = create_engine(postgres_url, idle_in_transaction_s=1.0)
    try:
        conn = await paused.connect()
        await conn.begin()
        await conn.execute(
            update(SessionLeaseRow)
            .where(SessionLeaseRow.session_id == sid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

        async def take() -> int | None:
            async with db() as session, session.begin():
                return await leases.take(
                    session, sid, "q", now=utcnow(), lease_s=LEASE_S, dead={"p"}
                )

        # The server ends the idle transaction after a second, and the lock with it.
        assert await asyncio.wait_for(take(), 10) == 2
        await conn.invalidate()
    finally:
        await paused.dispose()


async def test_an_instance_seen_dead_has_its_claims_given_back_once(
    db: async_sessionmaker[AsyncSession], postgres_url: str
) -> None:
    # An owner "y" that holds no member lock: dead, as after a kill -9.
    await _leased(db, "deadclaims", "y")
    member = member_lock(postgres_url, "x")
    await member.acquire()
    seen: list[set[str]] = []

    async def released(instances: set[str]) -> None:
        seen.append(instances)

    ownership = Ownership(db, "x", "http://x", lease_s=LEASE_S, max_sessions=1, clustered=True)
    ownership.on_dead = released
    try:
        await ownership.scan()
        await ownership.scan()
        assert seen == [{"y"}]
    finally:
        await member.release()
