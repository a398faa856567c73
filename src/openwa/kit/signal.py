"""A wake-up call for background loops: `notify` wakes every current waiter at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Signal:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        # Told of each local notify (several instances: the others are woken too).
        self._echoes: list[Callable[[], object]] = []

    def echo(self, callback: Callable[[], object]) -> None:
        self._echoes.append(callback)

    def notify(self, *, echo: bool = True) -> None:
        """Wake the waiters; `echo=False` for a wake that came from elsewhere."""
        self._event.set()
        self._event = asyncio.Event()
        if echo:
            for callback in self._echoes:
                callback()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after `timeout` seconds, whichever is first."""
        event = self._event
        # asyncio.timeout, not wait_for: no inner task that a cancel could leave behind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
