"""Reading the event log: pages for catch-up, and the stream behind SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.events.log import EventLog
from openwa.events.schemas import EventPage, LoggedEvent
from openwa.events.types import Event
from openwa.keys.principal import Principal
from openwa.kit.names import is_session_ref
from openwa.sessions.repository import SessionRepository

# How often a stream looks at the log without being woken (events of other instances).
_STREAM_POLL_S = 1.0


def logged(event: Event) -> LoggedEvent:
    return LoggedEvent(cursor=event.cursor or 0, **event.envelope())


class EventService:
    def __init__(self, db: async_sessionmaker[AsyncSession], log: EventLog) -> None:
        self._db = db
        self._log = log

    async def visible_sessions(
        self, principal: Principal, requested: Sequence[str] | None
    ) -> list[str] | None:
        """Session ids to filter by (None: all). Names are accepted; scope is enforced."""
        if requested:
            requested = [ref for ref in requested if is_session_ref(ref)]
            async with self._db() as db:
                found = await SessionRepository(db).ids(requested)
            ids = set(found.values()) | {r for r in requested if r not in found}
        else:
            ids = None
        if principal.sessions is None:
            return sorted(ids) if ids is not None else None
        allowed = set(principal.sessions)
        return sorted(allowed if ids is None else ids & allowed)

    async def page(
        self,
        after: int,
        limit: int,
        sessions: list[str] | None,
        names: list[str] | None,
    ) -> EventPage:
        async with self._db() as db:
            events = await self._log.after(db, after, limit, sessions, names)
        next_cursor = events[-1].cursor if events else after
        return EventPage(events=[logged(e) for e in events], next_cursor=next_cursor or after)

    async def stream(
        self,
        after: int,
        sessions: list[str] | None,
        names: list[str] | None,
        heartbeat_s: float = 15.0,
    ) -> AsyncIterator[Event | None]:
        """Events after `after`, forever; None now and then as a heartbeat."""
        cursor = after
        idle = 0.0
        while True:
            async with self._db() as db:
                batch = await self._log.after(db, cursor, 500, sessions, names)
                if not batch:
                    # Filtered-out events still move the cursor, so we never re-scan them.
                    cursor = max(cursor, await self._log.last_cursor(db))
            for event in batch:
                cursor = event.cursor or cursor
                yield event
            if batch:
                idle = 0.0
                continue
            await self._log.appended.wait(_STREAM_POLL_S)
            idle += _STREAM_POLL_S
            if idle >= heartbeat_s:
                idle = 0.0
                yield None
