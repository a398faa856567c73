"""Reading the event log: pages for catch-up, and the stream behind SSE."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import EventRow
from openwa.errors import EventNotFound
from openwa.events.log import EventLog
from openwa.events.pump import EventPump
from openwa.events.schemas import EventPage, LoggedEvent
from openwa.events.streams import LiveStream
from openwa.events.tail import tail
from openwa.events.types import Event, EventFilter
from openwa.keys.principal import Principal
from openwa.kit.names import is_session_ref
from openwa.sessions.repository import SessionRepository

# How often an idle stream reads the log without being woken: only a safety net for a
# wake-up missed (the pump reads the log for the whole instance, other instances'
# events included), so rare; 900 streams polling each second once slowed every request.
_STREAM_FALLBACK_S = 60.0


def logged(event: Event) -> LoggedEvent:
    return LoggedEvent(cursor=event.cursor or 0, **event.envelope())


class _Waker:
    """When a caught-up stream reads the log again: once the pump has read past its
    cursor (or the fallback interval has passed); meanwhile it ticks every `tick_s`
    (heartbeats) and stops waiting when its key is revoked."""

    def __init__(
        self, pump: EventPump, live: LiveStream | None, tick_s: float, fallback_s: float
    ) -> None:
        self._pump = pump
        self._live = live
        self._tick_s = tick_s
        self._fallback_s = fallback_s
        self._last_read = time.monotonic()

    def revoked(self) -> bool:
        return self._live is not None and self._live.revoked.is_set()

    def _due(self, cursor: int) -> bool:
        now = time.monotonic()
        if self._pump.cursor > cursor or now - self._last_read >= self._fallback_s:
            self._last_read = now
            return True
        return False

    async def __call__(self, cursor: int) -> bool:
        if self.revoked():
            return False
        # Taken before the check: the task below starts later, after an advance it
        # would otherwise miss until the next tick.
        ticket = self._pump.advanced.ticket()
        if self._due(cursor):
            return True
        timeout = min(self._tick_s, self._last_read + self._fallback_s - time.monotonic())
        if self._live is None:
            await self._pump.advanced.wait(timeout, ticket)
        else:
            advanced = asyncio.ensure_future(self._pump.advanced.wait(timeout, ticket))
            revoked = asyncio.ensure_future(self._live.revoked.wait())
            try:
                await asyncio.wait((advanced, revoked), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (advanced, revoked):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return not self.revoked() and self._due(cursor)


class EventService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        log: EventLog,
        pump: EventPump,
        *,
        fallback_s: float = _STREAM_FALLBACK_S,
    ) -> None:
        self._db = db
        self._log = log
        self._pump = pump
        self._fallback_s = fallback_s

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

    async def cursor_of(self, event_id: str, principal: Principal) -> int:
        """The cursor of the logged event `event_id`, to resume after it: WebSocket frames
        and webhooks carry the event's id, not its cursor, and a client cut off (a
        WebSocket closed for lagging, say) catches up from the last one it handled. An
        event of a session this key may not see is as unknown as one never logged."""
        async with self._db() as db:
            found = (
                await db.execute(
                    select(EventRow.cursor, EventRow.session_id).where(EventRow.id == event_id)
                )
            ).one_or_none()
        if found is None or not principal.may_see(found.session_id):
            raise EventNotFound(details={"eventId": event_id})
        cursor: int = found.cursor
        return cursor

    async def page(
        self,
        after: int,
        limit: int,
        sessions: list[str] | None,
        names: list[str] | None,
    ) -> EventPage:
        async with self._db() as db:
            events = await self._log.after(db, after, limit, sessions, EventFilter.of(names))
        next_cursor = events[-1].cursor if events else after
        return EventPage(events=[logged(e) for e in events], next_cursor=next_cursor or after)

    async def stream(
        self,
        after: int,
        sessions: list[str] | None,
        names: list[str] | None,
        heartbeat_s: float = 15.0,
        live: LiveStream | None = None,
    ) -> AsyncGenerator[Event | None]:
        """Events after `after`; None after `heartbeat_s` without one (a heartbeat).

        Endless, unless `live` (the stream's slot) is revoked: then it ends at once.
        Idle, it reads the database only when the pump says the log moved past it.
        """
        quiet_since = time.monotonic()
        wake = _Waker(self._pump, live, heartbeat_s, self._fallback_s)
        batches = tail(
            self._db, self._log, after, sessions=sessions, names=EventFilter.of(names), wake=wake
        )
        async with aclosing(batches):
            async for batch in batches:
                for event in batch.events:
                    if wake.revoked():
                        return
                    yield event
                if wake.revoked():
                    return
                now = time.monotonic()
                if batch.events:
                    quiet_since = now
                elif now - quiet_since >= heartbeat_s:
                    quiet_since = now
                    yield None
