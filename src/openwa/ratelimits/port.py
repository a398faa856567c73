"""The rate-limit port the authentication step calls; `limiter.py` implements it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from openwa.keys.principal import Role


class RateLimits(Protocol):
    """Each method raises `RateLimited` (429, `Retry-After`) when a limit is reached.

    Keyed by what the request already knows (the address, then the resolved key), so a
    check costs no database round trip: memory, or one Redis call with `CACHE_TYPE=redis`.
    """

    def authenticating(
        self, address: str, raw_key: str | None
    ) -> AbstractAsyncContextManager[None]:
        """Around the lookup of `raw_key` from `address`: on entry, refuse an address that
        failed too often (counting the lookups from it still under way), so a guessed
        key cannot be told apart from a wrong one once the limit is reached; a lookup
        that raises `Unauthorized` (missing, unknown or expired key) counts as a failure."""
        ...

    async def hit_key(self, key_id: str, role: Role) -> None:
        """Count one request of the key against its role's limit."""
        ...

    async def close(self) -> None: ...
