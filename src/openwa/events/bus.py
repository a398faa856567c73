"""The event bus port and its in-process adapter.

Publishers never wait on subscribers: each subscriber has a bounded queue, and one that
falls behind loses its subscription (it is told so) rather than slowing the engine that
publishes. A Redis adapter can replace this one for several instances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from openwa.events.types import Event


class SubscriberOverflow(Exception):
    """Raised to a subscriber whose queue filled up; it should catch up from the log."""


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(self, max_queue: int = 1000) -> Subscription: ...

    def has_subscribers(self) -> bool: ...

    async def close(self) -> None: ...


class Subscription:
    def __init__(self, bus: InMemoryEventBus, max_queue: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=max_queue)
        self.overflowed = False
        # Called once on overflow: a reader stuck elsewhere (a send on a full socket)
        # learns at once that it is too far behind, not at its next `get`.
        self.on_overflow: Callable[[], object] | None = None

    def _offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self._bus.unsubscribe(self)
            # Wake the reader so it sees the overflow now, not at its next event.
            self._queue.get_nowait()
            self._queue.put_nowait(None)
            if self.on_overflow is not None:
                self.on_overflow()

    async def get(self) -> Event:
        item = await self._queue.get()
        if item is None:
            raise SubscriberOverflow
        return item

    def close(self) -> None:
        self._bus.unsubscribe(self)


class InMemoryEventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    async def publish(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription._offer(event)

    def subscribe(self, max_queue: int = 1000) -> Subscription:
        subscription = Subscription(self, max_queue)
        self._subscribers.add(subscription)
        return subscription

    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def close(self) -> None:
        self._subscribers.clear()
