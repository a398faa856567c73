"""The rate-limit port the authentication step calls; `limiter.py` implements it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from openwa.keys.principal import Role

# Wraps a key lookup's trip to the database (see `RateLimits.authenticating`).
LookingUp = Callable[[], AbstractAsyncContextManager[None]]


class RateLimits(Protocol):
    """Each method raises `RateLimited` (429, `Retry-After`) when a limit is reached.

    Keyed by what the request already knows (the address, then the resolved key), so a
    check costs no database round trip: memory, or one Redis call with `CACHE_TYPE=redis`.
    """

    def authenticating(
        self, address: str, raw_key: str | None
    ) -> AbstractAsyncContextManager[LookingUp]:
        """Around the authentication of `raw_key` from `address`: on entry, refuse an
        address that failed too often, so a guessed key cannot be told apart from a
        wrong one once the limit is reached; a lookup that raises `Unauthorized`
        (missing, unknown or expired key) counts as a failure. What it yields wraps the
        lookup's trip to the database (a key the cache did not know): the keys on such
        trips from the address count as failures meanwhile, and may be refused."""
        ...

    async def hit_key(self, key_id: str, role: Role) -> None:
        """Count one request of the key against its role's limit."""
        ...

    async def close(self) -> None: ...
