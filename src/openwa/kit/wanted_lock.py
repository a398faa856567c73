"""An asyncio lock that tells its holder whether anyone waits for it.

A session's report worker holds the session's lock while it writes a run; when the
database is away it waits it out, which can take minutes. A stop, a restart or a
configuration change waiting for the same lock should not wait that long: the worker
asks `wanted()` between its tries and lets go of the lock when it is."""

from __future__ import annotations

import asyncio
from typing import Literal


class WantedLock(asyncio.Lock):
    def __init__(self) -> None:
        super().__init__()
        self._wanting = 0

    def wanted(self) -> bool:
        """Someone waits for the lock, or is being handed it (released to them, not yet
        taken: `locked()` is False then)."""
        return self._wanting > 0

    async def acquire(self) -> Literal[True]:
        self._wanting += 1
        try:
            return await super().acquire()
        finally:
            self._wanting -= 1
