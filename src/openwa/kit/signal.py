"""A wake-up call for background loops: `notify` wakes every current waiter at once.

A loop that looks for work and then waits takes a `ticket` before it looks: a notify
that comes while it looks (a commit its query did not see) then ends the wait at once,
instead of being missed until the wait's timeout.
"""

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

    def ticket(self) -> asyncio.Event:
        """What the next notify sets; pass it to `wait` to catch notifies from now on."""
        return self._event

    async def wait(self, timeout: float, ticket: asyncio.Event | None = None) -> None:
        """Return when notified (since `ticket` was taken, if given) or after `timeout`
        seconds, whichever is first."""
        event = self._event if ticket is None else ticket
        # asyncio.timeout, not wait_for: no inner task that a cancel could leave behind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
