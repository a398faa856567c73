"""Fixed-window rate limits per key (by role) and per address (failed authentication),
over counters in this process or in Redis shared by every instance (`windows.py`).

Fixed windows cost one counter per key and limit and let `Retry-After` be exactly the
time to the window's end; a client may burst up to twice the limit across a window
boundary, which per-second limits make harmless.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import AsyncIterator
from functools import partial

from limits import RateLimitItem

from openwa.errors import RateLimited, Unauthorized
from openwa.keys.principal import Role
from openwa.ratelimits.port import LookingUp
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
        # Per address, the keys whose lookup is under way (with their requests).
        self._looking: dict[str, collections.Counter[str]] = {}

    @contextlib.asynccontextmanager
    async def authenticating(self, address: str, raw_key: str | None) -> AsyncIterator[LookingUp]:
        """Around one key's authentication from `address` (the port's contract): refused
        on entry once the address failed too often; an `Unauthorized` counts as a
        failure; the lookup's trip to the database goes through what is yielded.

        A key the cache did not know counts as a failure from its trip to the database
        until it is answered: a failure is known only once its lookup is done, so with
        the failures alone a burst of parallel guesses all passed before any was counted
        (1,000 at once against a limit of 10 a minute). A key the cache knows is never
        counted (many requests at once, with one key or with many keys in use), but is
        refused like the others while the keys in flight fill the limit: otherwise a
        burst could try guesses against every key in use for the price of the limit."""
        trips: list[str] = []
        await self._check(address, 1)
        try:
            yield partial(self._looking_up, address, raw_key or "", trips)
            in_flight = len(self._looking.get(address, ()))
            if not trips and in_flight:
                # Answered from the cache while keys from the address are in flight. With
                # none, the check on entry stands: no second trip to the counters (Redis).
                await self._check(address, 1 + in_flight)
        except Unauthorized:
            for item in self._auth_failures:
                await self._windows.hit(item, "auth", address)
            raise
        finally:
            if trips:  # one key, at most one trip
                looking = self._looking[address]
                looking[trips[0]] -= 1
                if not looking[trips[0]]:
                    del looking[trips[0]]
                if not looking:
                    del self._looking[address]

    @contextlib.asynccontextmanager
    async def _looking_up(self, address: str, key: str, trips: list[str]) -> AsyncIterator[None]:
        """The key goes to the database: counted as in flight from here until its
        authentication is answered (`authenticating` lets go, after counting a
        failure), and refused if the keys in flight from the address fill the limit."""
        looking = self._looking.get(address)
        if looking is None:
            looking = self._looking[address] = collections.Counter()
        looking[key] += 1
        trips.append(key)
        await self._check(address, len(looking))
        yield

    async def _check(self, address: str, cost: int) -> None:
        for item in self._auth_failures:
            if not await self._windows.test(item, "auth", address, cost=cost):
                await self._refuse(item, ("auth", address), scope="address")

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
