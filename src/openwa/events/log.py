"""The event log: every event is written once, in the transaction that caused it.

Cursors come from a counter row that is updated (and so locked) by the writing
transaction until it commits. A transaction holding cursor N therefore commits before
any other can take N+1: cursors become visible in order, so a reader that has seen N
can never later find an event below N appear (PostgreSQL sequences would allow that).
On SQLite every writer is serialised anyway; the same code serves both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import table_of
from openwa.db.batches import Prune
from openwa.db.engine import is_postgres, on_commit
from openwa.db.models import CounterRow, DeliveryRow, EventRow
from openwa.events.types import Event, EventFilter
from openwa.kit.clock import utcnow
from openwa.kit.signal import Signal

# Called with the events as stored (each with its cursor).
FanOut = Callable[[AsyncSession, Sequence[Event]], Awaitable[None]]


def _values(event: Event) -> dict[str, Any]:
    """The event as a Core row of `events` (keys are column names)."""
    return {
        "cursor": event.cursor,
        "id": event.id,
        "event": event.event,
        "session_id": event.session_id,
        "engine": event.engine,
        "data": event.data,
        "metadata": event.metadata,
        "created_at": event.timestamp,
    }


def from_row(row: EventRow) -> Event:
    return Event(
        event=row.event,
        session_id=row.session_id,
        engine=row.engine,
        data=row.data,
        metadata=row.meta,
        id=row.id,
        timestamp=row.created_at,
        cursor=row.cursor,
    )


class _Committed:
    """The events one transaction appended, told once it commits (never on a rollback)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.names: list[str] = []

    def __call__(self) -> None:
        self.log.appended.notify()
        for listener in self.log._commit_listeners:
            listener(self.names)


class EventLog:
    def __init__(self) -> None:
        self.appended = Signal()
        self._fan_outs: list[FanOut] = []
        self._commit_listeners: list[Callable[[Sequence[str]], None]] = []

    def add_fan_out(self, fan_out: FanOut) -> None:
        """Called in the appending transaction (webhook deliveries are made there)."""
        self._fan_outs.append(fan_out)

    def add_commit_listener(self, listener: Callable[[Sequence[str]], None]) -> None:
        """Told the names of the events each transaction logged, once it commits."""
        self._commit_listeners.append(listener)

    async def append(self, db: AsyncSession, events: Sequence[Event]) -> list[Event]:
        """Write `events` in the caller's transaction; readers are woken once it commits.
        The events are returned as stored, with their cursors."""
        if not events:
            return []
        committed = on_commit(db, _Committed(self), key=self)
        assert isinstance(committed, _Committed)
        committed.names.extend(event.event for event in events)
        result = await db.execute(
            update(CounterRow)
            .where(CounterRow.name == "events")
            .values(value=CounterRow.value + len(events))
            .returning(CounterRow.value)
        )
        last = result.scalar_one()
        first = last - len(events) + 1
        stored = [replace(event, cursor=first + i) for i, event in enumerate(events)]
        # One executemany for the batch, in Core: no ORM objects on this path.
        await db.execute(insert(table_of(EventRow)), [_values(event) for event in stored])
        for fan_out in self._fan_outs:
            await fan_out(db, stored)
        return stored

    async def after(
        self,
        db: AsyncSession,
        cursor: int,
        limit: int,
        sessions: Sequence[str] | None = None,
        names: EventFilter | None = None,
        upto: int | None = None,
    ) -> list[Event]:
        """Up to `limit` events after `cursor` (and at most `upto`), oldest first; those
        `names` takes (None: every event)."""
        query = select(EventRow).where(EventRow.cursor > cursor)
        if upto is not None:
            query = query.where(EventRow.cursor <= upto)
        if sessions is not None:
            query = query.where(EventRow.session_id.in_(sessions))
        if names is not None and names.names is not None:
            query = query.where(EventRow.event.in_(names.names))
        if names is not None and names.leave_out:
            query = query.where(EventRow.event.not_in(names.leave_out))
        result = await db.execute(query.order_by(EventRow.cursor).limit(limit))
        return [from_row(row) for row in result.scalars()]

    async def last_cursor(self, db: AsyncSession) -> int:
        result = await db.execute(select(CounterRow.value).where(CounterRow.name == "events"))
        return int(result.scalar_one_or_none() or 0)

    async def prunable(self, read: AsyncSession, retention_days: int) -> Prune:
        """The events past the retention (db/batches.py), but those a pending delivery
        still has to send: a webhook that was inactive, or whose receiver was down,
        longer than the retention would otherwise find its queue gone ("no longer
        exists") when it works again. The walk ends at the newest event past the
        retention, not at the end of the log."""
        cutoff = utcnow() - timedelta(days=retention_days)
        newest = await read.scalar(
            select(func.max(EventRow.cursor)).where(EventRow.created_at < cutoff)
        )
        pending = DeliveryRow.status == "pending"
        if is_postgres(read):
            # An anti-join, hashed whatever the number of pending deliveries (`NOT IN`
            # over a subquery falls back to a scan per event past `work_mem`).
            keep = ~exists().where(DeliveryRow.event_cursor == EventRow.cursor, pending)
        else:
            # SQLite reads the subquery once into an index of its own (`NOT EXISTS` would
            # search the pending deliveries once per event). `event_cursor` is never NULL.
            keep = EventRow.cursor.not_in(select(DeliveryRow.event_cursor).where(pending))
        return Prune(
            [EventRow.cursor],
            [EventRow.cursor <= (newest or 0), EventRow.created_at < cutoff],
            [keep],
        )
