"""Wire schemas of API keys."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, Strict, field_validator

from openwa.keys.networks import MAX_CIDRS, normalise_cidr
from openwa.keys.principal import Role
from openwa.kit.clock import utcnow
from openwa.kit.schema import CamelModel, IsoDatetime, StrictCamelModel


def _in_future(value: datetime) -> datetime:
    # Checked when set (create, PATCH) only: a key that has since expired is still listed.
    # (In UTC already: `IsoDatetime`.)
    if value <= utcnow():
        raise ValueError("must be in the future")
    return value


# Controls (C0, DEL, C1) and the marks that turn text around (bidi overrides and
# isolates): a name shown in the dashboard and the audit log must read as it is.
_NOT_IN_A_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _readable(name: str) -> str:
    if _NOT_IN_A_NAME.search(name):
        raise ValueError("may not hold control characters or text-direction marks")
    if not name.strip():
        raise ValueError("may not be blank")
    return name


KeyName = Annotated[
    str,
    Field(min_length=1, max_length=100, examples=["crm-integration"]),
    AfterValidator(_readable),
]
KeySessions = Annotated[
    list[str],
    Field(
        max_length=1000,
        description="Session ids or names this key is limited to; null or omitted: all",
        examples=[["sales-team"]],
    ),
]
ExpiresAt = Annotated[
    IsoDatetime,
    AfterValidator(_in_future),
    Field(
        description="When the key stops working (ISO 8601 with an offset, in the future); "
        "null: never",
        examples=["2027-01-31T23:59:59Z"],
    ),
]
AllowedCidrs = Annotated[
    list[Annotated[str, Field(max_length=64), AfterValidator(normalise_cidr)]],
    Field(
        min_length=1,
        max_length=MAX_CIDRS,
        description=f"Client networks (IPv4 or IPv6 CIDR, at most {MAX_CIDRS}) the key may "
        "be used from; elsewhere it gets 403. Null: from anywhere",
        examples=[["10.0.0.0/8", "2001:db8::/32"]],
    ),
]


class ApiKeyCreate(StrictCamelModel):
    name: KeyName
    role: Annotated[Role, Strict(False)] = Field(examples=["operator"])
    sessions: KeySessions | None = None
    expires_at: ExpiresAt | None = None
    allowed_cidrs: AllowedCidrs | None = None


class ApiKeyUpdate(StrictCamelModel):
    """A partial change: fields left out stay as they are; `sessions`, `expiresAt` and
    `allowedCidrs` may be set to null (all sessions, never, anywhere)."""

    name: KeyName | None = None
    role: Annotated[Role, Strict(False)] | None = Field(default=None, examples=["viewer"])
    sessions: KeySessions | None = None
    expires_at: ExpiresAt | None = None
    allowed_cidrs: AllowedCidrs | None = None

    @field_validator("name", "role")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for a value that was sent: leaving the field out is fine, null is not.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class ApiKey(CamelModel):
    id: str = Field(examples=["key_01JD8X0000000000000000000A"])
    name: str
    role: Role
    prefix: str = Field(
        description="`owa_` and at most 4 characters of the key, to recognise it in a list"
    )
    sessions: list[str] | None
    source: str = Field(description="api, env (API_KEY) or generated (first start)")
    created_at: datetime
    expires_at: datetime | None = Field(description="When the key stops working; null: never")
    allowed_cidrs: list[str] | None = Field(
        description="Client networks the key may be used from; null: anywhere"
    )


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself; shown only in this response")
