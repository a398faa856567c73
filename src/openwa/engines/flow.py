"""Flow control of a session's reports, from the core back to its engine.

Reports (messages, acks, changes) wait in a queue per session until they are written.
When writing falls behind (a database that stalls, a history sync of thousands of
messages at link time), that queue would grow until the process runs out of memory. The
runtime closes the session's `ReportFlow` when the queue reaches its bound
(`ENGINE_REPORT_QUEUE_MAX`) and opens it again once it has drained to half. An engine
holds back what it can while the flow is closed, so that what is unwritten waits where
it costs nothing and is not lost:

- the mock makes whoever hands it a report wait (a `mock/inbound` call, a sender's
  transmission);
- whatsmeow's worker stops taking events from Go, so whatsmeow stops reading from
  WhatsApp, which keeps what it has not been acknowledged;
- an engine that cannot hold back ignores it, and its reports queue as before.

Nothing is dropped: the bound is where holding back starts, and what is already on its
way (between the engine's process and ours) is still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ReportFlow:
    """Open while the core keeps up with a session's reports."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        """Until open. Waiters woken together re-check in turn: the first one's report
        may close it again, and the rest go on waiting (the bound holds for them too)."""
        while not self._open.is_set():
            await self._open.wait()

    def listen(self, listener: Callable[[bool], None]) -> None:
        """`listener(open)` is told each change, at once (it must not block)."""
        self._listeners.append(listener)

    def set_open(self, value: bool) -> None:
        if value == self.is_open:
            return
        if value:
            self._open.set()
        else:
            self._open.clear()
        for listener in self._listeners:
            listener(value)
