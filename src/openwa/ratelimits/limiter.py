"""Fixed-window rate limits per key (by role) and per address (failed authentication),
over counters in this process or in Redis shared by every instance (`windows.py`).

Fixed windows cost one counter per key and limit and let `Retry-After` be exactly the
time to the window's end; a client may burst up to twice the limit across a window
boundary, which per-second limits make harmless.
"""

from __future__ import annotations

import math

from limits import RateLimitItem

from openwa.errors import RateLimited
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

    async def check_address(self, address: str) -> None:
        for item in self._auth_failures:
            if not await self._windows.test(item, "auth", address):
                await self._refuse(item, ("auth", address), scope="address")

    async def failed_authentication(self, address: str) -> None:
        for item in self._auth_failures:
            await self._windows.hit(item, "auth", address)

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
