"""Fixed-window rate limits over a `limits` storage (in-process memory, or Redis shared
by every instance).

Fixed windows cost one counter per key and limit and let `Retry-After` be exactly the
time to the window's end; a client may burst up to twice the limit across a window
boundary, which per-second limits make harmless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter

from openwa.errors import RateLimited
from openwa.keys.principal import Role

log = structlog.get_logger(__name__)
T = TypeVar("T")


class WindowRateLimits:
    """The `RateLimits` port on `limits`. A storage that fails lets the request through
    (logged): rate limiting is protection, not a reason to refuse service."""

    def __init__(
        self,
        storage: Storage,
        per_role: dict[Role, tuple[RateLimitItem, ...]],
        auth_failures: tuple[RateLimitItem, ...],
        *,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._per_role = per_role
        self._auth_failures = auth_failures
        self._close = close

    async def check_address(self, address: str) -> None:
        for item in self._auth_failures:
            if not await self._safely(self._limiter.test(item, "auth", address), True):
                await self._refuse(item, ("auth", address), scope="address")

    async def failed_authentication(self, address: str) -> None:
        for item in self._auth_failures:
            await self._safely(self._limiter.hit(item, "auth", address), True)

    async def hit_key(self, key_id: str, role: Role) -> None:
        for item in self._per_role.get(role, ()):
            if not await self._safely(self._limiter.hit(item, "key", key_id), True):
                await self._refuse(item, ("key", key_id), scope="key")

    async def _refuse(self, item: RateLimitItem, identifiers: tuple[str, ...], scope: str) -> None:
        stats = await self._safely(self._limiter.get_window_stats(item, *identifiers), None)
        reset_in = stats.reset_time - time.time() if stats is not None else item.get_expiry()
        retry_after = max(1, math.ceil(reset_in))
        raise RateLimited(
            f"over the rate limit of {item}; retry after {retry_after} s",
            details={"scope": scope, "limit": str(item), "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    @staticmethod
    async def _safely(call: Awaitable[T], fallback: T) -> T:
        try:
            return await call
        except Exception as exc:
            log.warning("rate_limit_storage_unavailable", error_type=type(exc).__name__)
            return fallback

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
