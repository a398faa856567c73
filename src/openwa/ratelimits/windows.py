"""Where the fixed windows' counters live: in this process, or in a `limits` storage
(Redis, shared by every instance).

A window opens at the first request it counts and lasts the limit's period, so
`Retry-After` is exactly the time to its end. Both kinds count alike; the in-process
one is a dictionary, because `limits`' own memory storage (a lock per key, a purge
task) cost a fifth of the cheapest authenticated request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog
from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Windows(Protocol):
    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one request; False once the window holds more than `item` allows."""
        ...

    async def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Whether `cost` more requests would be allowed, without counting them."""
        ...

    async def reset_in(self, item: RateLimitItem, *identifiers: str) -> float:
        """Seconds until the current window ends."""
        ...

    async def close(self) -> None: ...


class MemoryWindows:
    """Counters in this process: (window end, count) per limit and identifiers.

    Ended windows are dropped whenever the table has doubled since the last sweep, so it
    holds about the live windows (keys and addresses seen within their periods)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[RateLimitItem, tuple[str, ...]], list[float]] = {}
        self._sweep_at = 1024

    def _live(self, key: tuple[RateLimitItem, tuple[str, ...]], now: float) -> list[float] | None:
        window = self._windows.get(key)
        return window if window is not None and window[0] > now else None

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        now = time.time()
        key = (item, identifiers)
        window = self._live(key, now)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep(now)
            window = self._windows[key] = [now + item.get_expiry(), 0.0]
        window[1] += 1
        return window[1] <= item.amount

    async def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        window = self._live((item, identifiers), time.time())
        return (window[1] if window is not None else 0) + cost <= item.amount

    async def reset_in(self, item: RateLimitItem, *identifiers: str) -> float:
        now = time.time()
        window = self._live((item, identifiers), now)
        return window[0] - now if window is not None else float(item.get_expiry())

    def _sweep(self, now: float) -> None:
        self._windows = {key: w for key, w in self._windows.items() if w[0] > now}
        self._sweep_at = max(1024, 2 * len(self._windows))

    async def close(self) -> None:
        self._windows.clear()


class StorageWindows:
    """Counters in a `limits` storage. A storage that fails lets the request through
    (logged): rate limiting is protection, not a reason to refuse service."""

    def __init__(
        self, storage: Storage, *, close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._close = close

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        return await _safely(self._limiter.hit(item, *identifiers), True)

    async def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        return await _safely(self._limiter.test(item, *identifiers, cost=cost), True)

    async def reset_in(self, item: RateLimitItem, *identifiers: str) -> float:
        stats = await _safely(self._limiter.get_window_stats(item, *identifiers), None)
        return stats.reset_time - time.time() if stats is not None else item.get_expiry()

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


async def _safely(call: Awaitable[T], fallback: T) -> T:
    try:
        return await call
    except Exception as exc:
        log.warning("rate_limit_storage_unavailable", error_type=type(exc).__name__)
        return fallback
