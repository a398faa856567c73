"""The cache port: bytes by key with a TTL. Values are small, keys are namespaced."""

from __future__ import annotations

from typing import Protocol


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set `key` only when it is not there (atomically, across instances on Redis);
        whether it was set."""
        ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None:
        """Raise when the cache cannot be used (for `/health/ready`)."""
        ...

    async def close(self) -> None: ...
