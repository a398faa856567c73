"""One transaction per request and per job: the unit of work around an `AsyncSession`.

A request gets its session from `DbDep` (api/deps.py), a background job from
`unit_of_work(factory)`; either way services and repositories only read, add and
flush on the session they are handed, and the unit of work commits once at the end (or
rolls back on any exception: nothing of a failed request or job is written).

BEGIN is issued lazily, at the first statement: a request that ends up touching
nothing (an early 404, a call answered from memory) opens no transaction, and work done
before the first statement (an engine call) holds no write lock on SQLite.

After the commit, synchronous hooks registered with `db.engine.on_commit` run from the
session's after-commit event (wake-ups, in-memory copies); work that must be awaited
once the commit is durable and before the caller is answered (evicting a deleted key
from a shared cache) is registered with `after_commit_await`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

import structlog
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from openwa.db.engine import UnitOfWorkSession, conflict_detail
from openwa.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)

_AWAIT_AFTER_COMMIT = "openwa.await_after_commit"
_REQUEST_SCOPED = "openwa.request_scoped"

AfterCommit = Callable[[], Awaitable[None]]
RequestWork = Callable[[AsyncSession], Awaitable[None]]

request_work: ContextVar[RequestWork | None] = ContextVar("openwa.request_work", default=None)


def mark_request_scoped(db: AsyncSession) -> None:
    """`db` is a request's own unit of work: its commits carry the request's work."""
    db.info[_REQUEST_SCOPED] = True


def is_request_scoped(db: AsyncSession | Session) -> bool:
    return bool(db.info.get(_REQUEST_SCOPED))


@event.listens_for(UnitOfWorkSession, "after_rollback")
def _drop_awaited(session: Session) -> None:
    # Registered in work that was rolled back: never to run (a retry registers again).
    session.info.pop(_AWAIT_AFTER_COMMIT, None)


def after_commit_await(db: AsyncSession, hook: AfterCommit) -> None:
    """Await `hook` once this unit of work has committed (never if it rolls back)."""
    db.info.setdefault(_AWAIT_AFTER_COMMIT, []).append(hook)


async def commit(db: AsyncSession) -> None:
    """Commit the unit of work, then await its after-commit hooks.

    A commit that fails (database down, locked past the busy timeout, connection lost)
    is rolled back as the session closes, so nothing of the unit of work is written; it
    raises `DatabaseUnavailable` (the contract's 503 `NOT_READY`: try again), never a raw
    driver error, and drops the hooks. A failing hook is logged, not raised: the work is
    committed by then. With no transaction open (nothing was read or written, or it
    committed early) this issues nothing, unless the request has work to add.
    """
    try:
        if db.info.get(_REQUEST_SCOPED) and (work := request_work.get()) is not None:
            await work(db)
        await db.commit()
    except (SQLAlchemyError, OSError) as exc:
        db.info.pop(_AWAIT_AFTER_COMMIT, None)
        log.warning("commit_failed", error_type=type(exc).__name__, **conflict_detail(exc))
        raise DatabaseUnavailable(headers={"Retry-After": "1"}) from exc
    hooks: list[AfterCommit] = db.info.pop(_AWAIT_AFTER_COMMIT, [])
    for hook in hooks:
        try:
            await hook()
        except Exception:
            log.warning("after_commit_failed", hook=getattr(hook, "__qualname__", repr(hook)))


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for one job: committed once when the block ends, rolled back if it raises."""
    async with factory() as db:
        yield db  # an exception here leaves the block: closing the session rolls back
        await commit(db)
