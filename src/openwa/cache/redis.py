"""Redis cache, shared by every instance (so a deleted key stops working everywhere)."""

from __future__ import annotations

from redis.asyncio import Redis


class RedisCache:
    def __init__(self, url: str, namespace: str = "openwa:") -> None:
        self._redis = Redis.from_url(url)
        self._ns = namespace

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._ns + key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(self._ns + key, value, px=max(1, int(ttl_s * 1000)))

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        added = await self._redis.set(self._ns + key, value, px=max(1, int(ttl_s * 1000)), nx=True)
        return bool(added)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._ns + key)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
