"""Fixed-window rate limits per key (by role) and per address (failed authentication),
over counters in this process or in Redis shared by every instance (`windows.py`).

Fixed windows cost one counter per key and limit and let `Retry-After` be exactly the
time to the window's end; a client may burst up to twice the limit across a window
boundary, which per-second limits make harmless.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
from collections.abc import AsyncIterator

from limits import RateLimitItem

from openwa.errors import RateLimited, Unauthorized
from openwa.keys.principal import Role
from openwa.ratelimits.windows import Windows


class WindowRateLimits:
    """The `RateLimits` port."""

    def __init__(
        self,
        windows: Windows,
        per_role: dict[Role, tuple[RateLimitItem, ...]],
        auth_failures: tuple[RateLimitItem, ...],
    ) -> None:
        self._windows = windows
        self._per_role = per_role
        self._auth_failures = auth_failures
        # Per address, the keys whose lookup is under way (digests, with their requests).
        self._looking: dict[str, collections.Counter[bytes]] = {}

    @contextlib.asynccontextmanager
    async def authenticating(self, address: str, raw_key: str | None) -> AsyncIterator[None]:
        """Around one key lookup from `address` (the port's contract). The distinct keys
        being looked up from the address count as failures until their lookups end: a
        failure is only known once its lookup is done, so with the failures alone a
        burst of parallel guesses all passed before any was counted (1,000 at once,
        against a limit of 10 a minute). Counting distinct keys, not requests, leaves a
        client that sends many requests at once with its one key unaffected."""
        guess = hashlib.blake2b((raw_key or "").encode(), digest_size=16).digest()
        looking = self._looking.setdefault(address, collections.Counter())
        looking[guess] += 1
        try:
            for item in self._auth_failures:
                if not await self._windows.test(item, "auth", address, cost=len(looking)):
                    await self._refuse(item, ("auth", address), scope="address")
            try:
                yield
            except Unauthorized:
                for item in self._auth_failures:
                    await self._windows.hit(item, "auth", address)
                raise
        finally:
            looking[guess] -= 1
            if not looking[guess]:
                del looking[guess]
                if not looking:
                    self._looking.pop(address, None)

    async def hit_key(self, key_id: str, role: Role) -> None:
        for item in self._per_role.get(role, ()):
            if not await self._windows.hit(item, "key", key_id):
                await self._refuse(item, ("key", key_id), scope="key")

    async def _refuse(self, item: RateLimitItem, identifiers: tuple[str, ...], scope: str) -> None:
        retry_after = max(1, math.ceil(await self._windows.reset_in(item, *identifiers)))
        raise RateLimited(
            f"over the rate limit of {item}; retry after {retry_after} s",
            details={"scope": scope, "limit": str(item), "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    async def close(self) -> None:
        await self._windows.close()
