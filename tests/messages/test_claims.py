"""What a claim takes from a table-backed queue: each group's head and the due rows right
behind it, never a row whose group has an earlier row still pending (done ones do not
count), and nothing of a group whose head is leased or not yet due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.engine import create_engine, create_session_factory
from openwa.db.models import OutboxJobRow
from openwa.kit.clock import utcnow
from openwa.queue import outbox
from openwa.queue.claims import Budget, claim_runs
from tests.fixtures.locks import postgres_only


def _job(session_id: str, name: str, due: Any, now: Any, **extra: Any) -> OutboxJobRow:
    values: dict[str, Any] = {"attempts": 0, "done": False, **extra}
    return OutboxJobRow(
        session_id=session_id, message_id=name, due_at=due, created_at=now, **values
    )


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def test_a_claim_takes_each_groups_head_and_the_due_rows_behind_it(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    past, later = now - timedelta(minutes=5), now + timedelta(hours=1)

    def job(session_id: str, name: str, due: Any, **extra: Any) -> OutboxJobRow:
        return _job(session_id, name, due, now, **extra)

    async with factory() as db, db.begin():
        db.add_all(
            [
                # a: three due, in due order (the second one the earliest)
                job("a", "a2", past + timedelta(seconds=2)),
                job("a", "a1", past + timedelta(seconds=1)),
                job("a", "a3", past + timedelta(seconds=3)),
                # b: the head is leased by another worker; the rest waits behind it
                job("b", "b1", past, locked_until=later, locked_by="other"),
                job("b", "b2", past),
                # c: the head is not due yet; a due row behind it waits
                job("c", "c1", later),
                job("c", "c2", later + timedelta(seconds=1)),
                # d: a finished row first (not pending), then two due, then one not due
                job("d", "d0", past - timedelta(seconds=9), done=True),
                job("d", "d1", past),
                job("d", "d2", past + timedelta(seconds=1)),
                job("d", "d3", later),
                # e: not in the claim's scope
                job("e", "e1", past),
            ]
        )
    async with factory() as db, db.begin():
        runs = await outbox.claim(db, ["a", "b", "c", "d"], utcnow(), 60.0, "me", 10)
    taken = sorted([job.message_id for job in run] for run in runs)
    assert taken == [["a1", "a2", "a3"], ["d1", "d2"]]
    # Claimed for this worker: another claim now finds nothing of theirs.
    async with factory() as db, db.begin():
        again = await outbox.claim(db, ["a", "b", "c", "d"], utcnow(), 60.0, "you", 10)
    assert again == []


@pytest.mark.parametrize(
    ("budget", "claimed"),
    [
        # Four rows for the one key: a's three, then d's first.
        (Budget(lambda _row: "one key", 4), [["a1", "a2", "a3"], ["d1"]]),
        # Rows of one key (a lane free) at most: d's are not touched.
        (Budget(lambda row: row.session_id, 2, keys=1), [["a1", "a2"]]),
    ],
)
async def test_a_budget_caps_the_rows_claimed_per_key_and_leases_no_more(
    factory: async_sessionmaker[AsyncSession], budget: Budget, claimed: list[list[str]]
) -> None:
    """The delivery lanes' budget: rows a key has no room for, and rows of keys beyond
    the lanes free, are neither run nor leased."""
    now = utcnow()
    past = now - timedelta(minutes=5)
    names = ["a1", "a2", "a3", "d1", "d2"]
    async with factory() as db, db.begin():
        db.add_all(
            [_job(name[0], name, past + timedelta(seconds=i), now) for i, name in enumerate(names)]
        )
    async with factory() as db, db.begin():
        runs = await claim_runs(
            db,
            outbox.SENDS,
            scope=[OutboxJobRow.session_id.in_(["a", "d"])],
            now=utcnow(),
            lease_s=60.0,
            worker="me",
            limit=10,
            per_group=10,
            budget=budget,
        )
    assert [[job.message_id for job in run] for run in runs] == claimed
    async with factory() as db:
        leased = await db.execute(
            select(OutboxJobRow.message_id).where(OutboxJobRow.locked_by == "me")
        )
        assert sorted(leased.scalars()) == sorted(name for run in claimed for name in run)


async def test_a_row_held_by_another_transaction_cuts_the_run_there(
    factory: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """PostgreSQL claims with SKIP LOCKED: a row in the middle of a group that another
    transaction holds (a replay of it, another instance's results) was left out of the
    run, whose later rows then went out before it."""
    postgres_only(database_url)
    now = utcnow()
    past = now - timedelta(minutes=5)
    async with factory() as db, db.begin():
        db.add_all([_job("a", f"a{n}", past + timedelta(seconds=n), now) for n in (1, 2, 3)])
    async with factory() as holder, holder.begin():
        await holder.execute(
            select(OutboxJobRow).where(OutboxJobRow.message_id == "a2").with_for_update()
        )
        async with factory() as db, db.begin():
            runs = await outbox.claim(db, ["a"], utcnow(), 60.0, "me", 10)
    assert [[job.message_id for job in run] for run in runs] == [["a1"]]
