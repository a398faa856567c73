"""A wake-up call for background loops: `notify` wakes every current waiter at once."""

from __future__ import annotations

import asyncio
import contextlib


class Signal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after `timeout` seconds, whichever is first."""
        event = self._event
        # asyncio.timeout, not wait_for: no inner task that a cancel could leave behind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
