"""Following the event log without ever skipping an event: one loop for SSE and the pump.

A filtered reader must move its cursor past the events its filter drops, or it would scan
them again on every read. The cursor may only jump to a point it has fully read, so the
log's high-water mark is read *first* and the events are read *up to it*:

1. `high` = the committed value of the cursor counter. Cursors are taken under that row's
   lock and become visible in commit order (see `log.py`), so every event up to `high`
   has committed by the time this statement runs.
2. events with `cursor <= high` (and the filters): a later statement sees all of them.

If fewer than `limit` came back, nothing up to `high` is left, and the cursor moves to
`high`; otherwise to the last event returned. An event committed between the two
statements has a cursor above `high`: the bound leaves it for the next read instead of
jumping over it. (Reading the events first and the counter second, as SSE once did, let
such an event be counted by the jump and never sent.)

Why not one statement: the high-water mark must survive an empty result, which takes an
outer join from the counter row, and then PostgreSQL sorts every match of the range
before the LIMIT instead of walking the primary key (checked with EXPLAIN). Why not read
every row and filter here: a filtered stream on a busy log would fetch every other
session's payloads. Two statements cost one more primary-key lookup than the old read,
and are correct under READ COMMITTED as well as in SQLite's one-writer transactions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.events.log import EventLog
from openwa.events.types import Event, EventFilter


@dataclass(frozen=True)
class Batch:
    """Events read in one go, and the cursor to continue from (past filtered-out ones)."""

    events: list[Event]
    cursor: int
    caught_up: bool


async def read_batch(
    db: AsyncSession,
    log: EventLog,
    after: int,
    limit: int,
    sessions: Sequence[str] | None = None,
    names: EventFilter | None = None,
) -> Batch:
    """The next events after `after`; see the module docstring for why this order."""
    high = await log.last_cursor(db)
    events = await log.after(db, after, limit, sessions, names, upto=high)
    if len(events) < limit:
        return Batch(events, max(after, high), caught_up=True)
    return Batch(events, events[-1].cursor or after, caught_up=False)


# Given the cursor a caught-up reader stands at, waits and says whether to read again.
Wake = Callable[[int], Awaitable[bool]]


async def tail(
    db: async_sessionmaker[AsyncSession],
    log: EventLog,
    after: int,
    *,
    sessions: Sequence[str] | None = None,
    names: EventFilter | None = None,
    limit: int = 500,
    poll_s: float = 1.0,
    unread: Callable[[], bool] | None = None,
    wake: Wake | None = None,
) -> AsyncGenerator[Batch]:
    """Batches after `after`, forever, in cursor order; each read yields one (maybe empty).

    While `unread()` is true the events are stepped over (the event pump with no
    subscriber), if it is still true once the log's mark has been read. Once caught up it waits for `log.appended` (an append on this instance)
    or `poll_s` (appends by other instances on the same database) before reading again.
    Given `wake` (SSE: woken by the pump, so idle streams cost no query), it reads again
    when `wake(cursor)` says so; each time it says no, an empty batch is yielded without
    a read, so the reader can send a heartbeat or stop.
    """
    cursor = after
    while True:
        appended = log.appended.ticket()  # an event committed while we read still wakes us
        async with db() as session:
            batch = None
            if unread is not None and unread():
                # Nobody would see the events: step over them without loading them. If
                # someone subscribed while the mark was read, an event committed after
                # they did may lie below it: then the range is read, never stepped over.
                high = await log.last_cursor(session)
                if unread():
                    batch = Batch([], max(cursor, high), caught_up=True)
            if batch is None:
                batch = await read_batch(session, log, cursor, limit, sessions, names)
        cursor = batch.cursor
        yield batch
        if batch.caught_up:
            if wake is None:
                await log.appended.wait(poll_s, appended)
                continue
            while not await wake(cursor):
                yield Batch([], cursor, caught_up=True)
