"""Feeds the event bus from the event log, in cursor order.

Live consumers (the WebSocket) read the bus; the bus is fed only from committed log
rows, so they see exactly what `/api/events` shows, in the same order, including
events written by other instances on the same database.

The pump is also the one reader that watches the log for the whole instance: SSE
streams wait on `advanced` (the pump read past their cursor) instead of each polling
the database, so an idle stream costs no query however many are open.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.events.bus import EventBus
from openwa.events.log import EventLog
from openwa.events.tail import tail
from openwa.kit.background import BackgroundTask
from openwa.kit.signal import Signal

log = structlog.get_logger(__name__)

_POLL_S = 0.5
_BATCH = 500


class EventPump:
    def __init__(
        self, db: async_sessionmaker[AsyncSession], events: EventLog, bus: EventBus
    ) -> None:
        self._db = db
        self._events = events
        self._bus = bus
        self._loop = BackgroundTask("event-pump", self._run)
        self._cursor = 0
        # Notified whenever `cursor` grows (events of this instance or of others).
        self.advanced = Signal()

    @property
    def cursor(self) -> int:
        """The log's committed high-water mark as of the pump's last read."""
        return self._cursor

    async def start(self) -> None:
        async with self._db() as db:
            self._cursor = await self._events.last_cursor(db)
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        seen = self._cursor
        while True:
            try:
                batches = tail(
                    self._db,
                    self._events,
                    self._cursor,
                    limit=_BATCH,
                    poll_s=_POLL_S,
                    # Loading every event for a bus nobody listens to was a seventh of
                    # the server's CPU while it fanned events out to webhooks.
                    unread=lambda: not self._bus.has_subscribers(),
                )
                async with aclosing(batches):
                    async for batch in batches:
                        for event in batch.events:
                            await self._bus.publish(event)
                            self._cursor = event.cursor or self._cursor
                        self._cursor = batch.cursor
                        if self._cursor > seen:
                            seen = self._cursor
                            self.advanced.notify()
            except Exception:
                log.exception("event_pump_failed")
            # After a failure, carry on from the last event published.
            await asyncio.sleep(_POLL_S)
