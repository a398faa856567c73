"""The rate-limit port the authentication step calls; `limiter.py` implements it."""

from __future__ import annotations

from typing import Protocol

from openwa.keys.principal import Role


class RateLimits(Protocol):
    """Each method raises `RateLimited` (429, `Retry-After`) when a limit is reached.

    Keyed by what the request already knows (the address, then the resolved key), so a
    check costs no database round trip: memory, or one Redis call with `CACHE_TYPE=redis`.
    """

    async def check_address(self, address: str) -> None:
        """Before the key is looked at: refuse an address that failed too often, so a
        guessed key cannot be told apart from a wrong one once the limit is reached."""
        ...

    async def failed_authentication(self, address: str) -> None:
        """Count one failed authentication (missing, unknown or expired key)."""
        ...

    async def hit_key(self, key_id: str, role: Role) -> None:
        """Count one request of the key against its role's limit."""
        ...

    async def close(self) -> None: ...
