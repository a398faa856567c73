"""Work done again when PostgreSQL rolled it back to break a deadlock.

The loser of a deadlock wrote nothing (`db/engine.py: lost_a_deadlock`), so work that
did nothing outside the database before it lost may simply run again. Left to the
caller, such a loss is a 503 "try again" (`api/errors.py`) for a call that meets a
background worker on the same rows through no fault of the client (a webhook's delete
cascading to deliveries the delivery worker is recording), or a run left claimed until
its claim runs out (the send worker's record). One loop serves them all, so that each
retries, pauses and logs alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.engine import conflict_detail, lost_a_deadlock
from openwa.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Tries in all before a lost deadlock is the caller's failure (a 503 for a request).
ATTEMPTS = 3


async def again_if_deadlocked(
    work: Callable[[], Awaitable[T]],
    *,
    event: str,
    db: AsyncSession | None = None,
    attempts: int | None = None,
    **fields: Any,
) -> T:
    """`work()`, run again (up to `attempts` tries, `ATTEMPTS` by default) each time
    PostgreSQL rolls it back to break a deadlock; any other failure, and the last loss,
    is raised.

    `work` must start afresh each time (read its rows again) and do nothing outside the
    database: what it did before it lost is not undone. `db` is the session it works
    on, rolled back before the next try (its transaction is dead; what the unit of work
    registered for its commit goes with it, so it must hold nothing of before); work
    that opens its own session passes none. A loss at a commit (`DatabaseUnavailable`,
    `db/unit_of_work.py`) is told by its cause. Each retry is logged as `event` with
    `fields` and what the database said, after a short random pause that grows with the
    tries, so that two parties that keep meeting drift apart.
    """
    tries = ATTEMPTS if attempts is None else attempts
    attempt = 1
    while True:
        try:
            return await work()
        except (DBAPIError, DatabaseUnavailable) as exc:
            cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
            if cause is None or attempt >= tries or not lost_a_deadlock(cause):
                raise
            if db is not None:
                await db.rollback()
            log.info(event, attempt=attempt, **fields, **conflict_detail(cause))
        await asyncio.sleep(random.uniform(0.01, 0.1) * attempt)
        attempt += 1
