"""Session leases between instances, on the real PostgreSQL: one owner at a time, epochs
that grow with each takeover, a dead owner's sessions taken at once, a paused owner
fenced by its own clock, shares in proportion to room.

Two `Ownership` services stand for two instances on one database; the runtime they
drive is a small recorder of what they start and drop (the real runtime and engines
run in the three-process tests of this package).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster.leases import LeaseLost
from openwa.cluster.ownership import Ownership
from openwa.db.instance_lock import member_lock
from openwa.db.models import SessionLeaseRow
from openwa.engines.base import AuthNotOurs
from openwa.kit.clock import utcnow
from openwa.sessions.auth_store import DatabaseAuthStore
from tests.cluster.support import Recorder, wanted_sessions

pytestmark = pytest.mark.postgres

LEASE_S = 1.5
LONG_LEASE_S = 30.0


class Clock:
    """A monotonic clock that a test can move forward, as a pause would."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


@pytest.fixture
async def cluster(
    db: async_sessionmaker[AsyncSession], postgres_url: str
) -> AsyncIterator[Callable[..., Awaitable[Recorder]]]:
    """Makes members: each holds its member lock, as a started instance does."""
    made: list[Recorder] = []

    async def member(
        name: str, clock: Clock | None = None, room: int = 10, lease_s: float = LEASE_S
    ) -> Recorder:
        ownership = Ownership(
            db,
            name,
            f"http://127.0.0.1/{name}",
            lease_s=lease_s,
            max_sessions=room,
            clustered=True,
            member=member_lock(postgres_url, name),
            monotonic=clock or Clock(),
        )
        assert ownership.member is not None
        await ownership.member.acquire()
        made.append(Recorder(ownership, room))
        return made[-1]

    yield member
    for recorder in made:
        assert recorder.ownership.member is not None
        await recorder.ownership.member.release()


async def leases(db: async_sessionmaker[AsyncSession]) -> dict[str, tuple[str, int]]:
    async with db() as session:
        found = await session.execute(select(SessionLeaseRow))
        return {row.session_id: (row.owner, row.epoch) for row in found.scalars()}


Members = Callable[..., Awaitable[Recorder]]


async def test_a_dead_owners_sessions_are_taken_at_once_under_a_new_epoch(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    ids = await wanted_sessions(db, 6)
    a, b = await cluster("inst-a"), await cluster("inst-b")
    await a.ownership.tick()  # alone so far: takes every session
    assert a.running == set(ids)
    await b.ownership.tick()
    assert b.running == set()  # all held by a live owner
    assert set((await leases(db)).values()) == {("inst-a", 1)}

    assert a.ownership.member is not None
    await a.ownership.member.release()  # as a kill -9 ends its connection
    await b.ownership.tick()  # long before the leases would run out
    assert b.running == set(ids)
    assert set((await leases(db)).values()) == {("inst-b", 2)}

    # Were the old owner alive after all (its connection cut, not its process), its
    # next round finds its lock had gone and drops everything before anything else.
    await a.ownership.tick()
    assert a.running == set()
    assert sorted(a.fenced) == ids
    assert not any(a.ownership.holds(sid) for sid in ids)
    assert set((await leases(db)).values()) == {("inst-b", 2)}


async def test_a_paused_owner_stops_by_its_own_clock_and_the_lease_then_moves(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    ids = await wanted_sessions(db, 3)
    paused_clock = Clock()
    a, b = await cluster("inst-a", paused_clock), await cluster("inst-b")
    await a.ownership.tick()
    assert all(a.ownership.holds(sid) for sid in ids)
    # Paused past its lease: on waking, by its own clock nothing is surely its own,
    # before any renewal has been tried.
    paused_clock.skew = LEASE_S
    assert not any(a.ownership.holds(sid) for sid in ids)

    # Its member lock still held (a paused process keeps its connection): the others
    # wait for the leases to run out, then take them.
    await b.ownership.tick()
    assert b.running == set()
    deadline = asyncio.get_running_loop().time() + 10
    while b.running != set(ids):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
        await b.ownership.tick()
    assert set((await leases(db)).values()) == {("inst-b", 2)}

    await a.ownership.tick()  # wakes: drops what it may no longer run
    assert a.running == set()
    assert sorted(a.fenced) == ids


async def test_a_released_lease_is_taken_at_once_and_shares_follow_room(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    ids = await wanted_sessions(db, 10)
    # Their own loops run here: with the short lease (half a second surely held), a
    # loaded machine's late renewal fences sessions this test does not mean to move.
    # What moves them here is the release, never an expiry.
    a = await cluster("inst-a", room=10, lease_s=LONG_LEASE_S)
    b = await cluster("inst-b", room=10, lease_s=LONG_LEASE_S)
    await b.ownership._beat()  # b has joined (with room) when a starts
    await a.ownership.start()
    await b.ownership.start()
    try:
        assert len(a.running) == 5  # half: b has as much room
        await b.ownership.tick()  # shares are judged on room as last seen: a round more
        assert a.running | b.running == set(ids)
        assert not a.running & b.running

        moved = sorted(a.running)
        a.running.clear()
        await a.ownership.drain()
        await a.ownership.leave()  # a clean shutdown gives them back
        await b.ownership.tick()
        assert b.running == set(ids)
        owners = await leases(db)
        assert all(owners[sid] == ("inst-b", 2) for sid in moved)
    finally:
        await a.ownership.leave()
        await b.ownership.leave()


async def test_alone_every_lease_is_taken_whoever_held_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    (sid,) = await wanted_sessions(db, 1)
    async with db() as session, session.begin():
        later = utcnow().replace(year=utcnow().year + 1)
        session.add(SessionLeaseRow(session_id=sid, owner="old", epoch=7, expires_at=later))
    alone = Ownership(
        db, "solo", "http://127.0.0.1", lease_s=LEASE_S, max_sessions=5, clustered=False
    )
    assert await alone.acquire(sid) == 8
    assert alone.holds(sid)


async def test_a_status_write_is_fenced_by_the_epoch_in_its_own_transaction(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    (sid,) = await wanted_sessions(db, 1)
    a, b = await cluster("inst-a"), await cluster("inst-b")
    await a.ownership.tick()
    async with db() as session, session.begin():
        await a.ownership.confirm(session, sid)  # still its own: the write may go

    assert a.ownership.member is not None
    await a.ownership.member.release()
    await b.ownership.tick()
    assert b.running == {sid}
    # By its clock `a` still holds the lease (it has not noticed): the write's own
    # transaction finds the epoch moved, and nothing is written.
    assert a.ownership.holds(sid)
    with pytest.raises(LeaseLost):
        async with db() as session, session.begin():
            await a.ownership.confirm(session, sid)


async def test_an_engines_auth_write_is_fenced_by_the_lease(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    """A paused owner's engine still holds the old connection's keys: once the session
    has moved, its saves and clears leave the new owner's auth state as it is."""
    (sid,) = await wanted_sessions(db, 1)
    a, b = await cluster("inst-a"), await cluster("inst-b")
    await a.ownership.tick()
    stale = _client_store(db, a, sid)
    await stale.save({"keys": "while a owned it"})

    assert a.ownership.member is not None
    await a.ownership.member.release()
    await b.ownership.tick()
    assert b.running == {sid}
    await DatabaseAuthStore(db, sid, "baileys").save({"keys": "b's"})
    assert a.ownership.holds(sid)  # by its own clock: it has not noticed yet
    with pytest.raises(AuthNotOurs):
        await stale.save({"keys": "a's, stale"})
    with pytest.raises(AuthNotOurs):
        await stale.clear()
    assert await DatabaseAuthStore(db, sid, "baileys").load() == {"keys": "b's"}


async def test_a_client_left_over_from_an_earlier_start_here_writes_nothing(
    db: async_sessionmaker[AsyncSession], cluster: Members
) -> None:
    """The fence is the epoch a client was started under, not the instance's current
    one: an old client's late save, once the session has been started here again
    under a new epoch, would write its stale keys over the new client's."""
    (sid,) = await wanted_sessions(db, 1)
    a = await cluster("inst-a")
    await a.ownership.tick()
    old_client = _client_store(db, a, sid)
    await a.ownership.release(sid)  # stopped here
    with pytest.raises(AuthNotOurs):
        await old_client.save({"keys": "old client's"})
    await a.ownership.acquire(sid)  # started here again: a new client, a new epoch
    new_client = _client_store(db, a, sid)
    await new_client.save({"keys": "new client's"})
    with pytest.raises(AuthNotOurs):
        await old_client.save({"keys": "old client's, stale"})
    assert await DatabaseAuthStore(db, sid, "baileys").load() == {"keys": "new client's"}


def _client_store(
    db: async_sessionmaker[AsyncSession], member: Recorder, sid: str
) -> DatabaseAuthStore:
    """The store a client started now on `member` gets (as the runtime makes it)."""
    epoch = member.ownership._held[sid].epoch
    fence = functools.partial(member.ownership.confirm, session_id=sid, epoch=epoch)
    return DatabaseAuthStore(db, sid, "baileys", fence)
