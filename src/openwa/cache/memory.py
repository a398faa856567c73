"""In-process cache: a dict with expiry times, bounded so it cannot grow without end."""

from __future__ import annotations

import time
from collections import OrderedDict


class MemoryCache:
    def __init__(self, max_items: int = 100_000) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_items = max_items

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._items.pop(key, None)
            return None
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._items[key] = (time.monotonic() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
