"""A send's record that PostgreSQL rolls back to break a deadlock is written again.

Found by the three-instance tests (tests/cluster): instances writing the event log at
once deadlocked on its counter; the losing send worker left its run claimed, and the
session's queue waited a minute for the claim to run out. `lost_a_deadlock` is what
tells the sender that nothing of the record was written, so that it may try again.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from openwa.db.engine import create_engine, lost_a_deadlock

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("database_kind", ["postgres"], indirect=True)
async def test_a_real_deadlock_is_told_apart(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as setup:
            await setup.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int)"))
            await setup.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))
            await setup.commit()
        first, second = await engine.connect(), await engine.connect()
        await first.execute(text("UPDATE t SET v = 1 WHERE id = 1"))
        await second.execute(text("UPDATE t SET v = 1 WHERE id = 2"))
        results = await asyncio.gather(
            first.execute(text("UPDATE t SET v = 2 WHERE id = 2")),
            second.execute(text("UPDATE t SET v = 2 WHERE id = 1")),
            return_exceptions=True,
        )
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(lost) == 1, results
        assert isinstance(lost[0], DBAPIError)
        assert lost_a_deadlock(lost[0])
        assert not lost_a_deadlock(ValueError("no"))
        await first.close()
        await second.close()
    finally:
        await engine.dispose()
