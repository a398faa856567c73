"""The caller behind a request: a key's role and the sessions it may touch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from openwa.errors import Forbidden, Unauthorized
from openwa.keys.networks import Network, address_allowed
from openwa.kit.clock import iso


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: Role
    # None: every session. Otherwise only these session ids.
    sessions: frozenset[str] | None
    # None: never expires.
    expires_at: datetime | None = None
    # None: any client address. Otherwise the networks the key may be used from.
    networks: tuple[Network, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def can_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.OPERATOR)

    def may_see(self, session_id: str) -> bool:
        return self.sessions is None or session_id in self.sessions

    def require_usable(self, now: datetime, address: str | None) -> None:
        """Expiry and client networks, checked on every request and stream handshake:
        in memory, on the cached principal."""
        if self.expires_at is not None and now >= self.expires_at:
            raise Unauthorized("the API key expired", details={"expiredAt": iso(self.expires_at)})
        if self.networks is not None and not address_allowed(address, self.networks):
            raise Forbidden(
                "this key may not be used from this address", details={"address": address}
            )

    def require_write(self) -> None:
        if not self.can_write:
            raise Forbidden("viewer keys may only read", details={"role": self.role.value})

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("only admin keys may do this", details={"role": self.role.value})

    def require_unscoped(self) -> None:
        if self.sessions is not None:
            raise Forbidden("a key limited to sessions may not do this")
