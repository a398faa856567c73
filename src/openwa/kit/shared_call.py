"""One call's answer shared by the callers of the moment, and reused for a while.

Open routes that read the database or the adapters (`/health/ready`, `/metrics`) are
anyone's to call: a flood of them must cost one read at a time, not one each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedCall(Generic[T]):
    """`call` run at most once at a time: callers that come meanwhile share the run
    under way, and those within `fresh_s()` after it the answer it gave. A failed run
    is not kept: the next caller runs it again."""

    def __init__(self, call: Callable[[], Awaitable[T]], fresh_s: Callable[[], float]) -> None:
        self._call = call
        self._fresh_s = fresh_s
        self._running: asyncio.Task[T] | None = None
        self._last: tuple[float, T] | None = None
        self.waiting = 0  # callers waiting for the run under way

    async def __call__(self) -> T:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self._fresh_s():
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._call())
            self._running.add_done_callback(self._done)
        # Shielded: one caller going away does not cancel the others' run.
        self.waiting += 1
        try:
            return await asyncio.shield(self._running)
        finally:
            self.waiting -= 1

    async def close(self) -> None:
        """Cancel a run still under way (at shutdown, before the adapters close)."""
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    def _done(self, task: asyncio.Task[T]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._last = (time.monotonic(), task.result())
