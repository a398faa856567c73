"""Reading the event log: pages for catch-up, and the stream behind SSE."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.events.log import EventLog
from openwa.events.schemas import EventPage, LoggedEvent
from openwa.events.tail import tail
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
    ) -> AsyncGenerator[Event | None]:
        """Events after `after`, forever; None after `heartbeat_s` without one (a heartbeat)."""
        quiet_since = time.monotonic()
        batches = tail(
            self._db, self._log, after, sessions=sessions, names=names, poll_s=_STREAM_POLL_S
        )
        async with aclosing(batches):
            async for batch in batches:
                for event in batch.events:
                    yield event
                now = time.monotonic()
                if batch.events:
                    quiet_since = now
                elif now - quiet_since >= heartbeat_s:
                    quiet_since = now
                    yield None
