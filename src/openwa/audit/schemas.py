"""Wire schemas of the audit log, and its filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from openwa.kit.schema import CamelModel


@dataclass(frozen=True, slots=True)
class AuditFilters:
    key_id: str | None = None
    session_id: str | None = None
    action: str | None = None
    since: datetime | None = None


class AuditEntry(CamelModel):
    id: int
    at: datetime
    key_id: str | None = Field(
        description="The key that called; null when none authenticated",
        examples=["key_01JD8X0000000000000000000A"],
    )
    address: str | None = Field(description="The client's address", examples=["203.0.113.7"])
    action: str = Field(
        description="The operation (the route's name, e.g. `create_session`), or "
        "`key_first_use` for a key's first call from this address",
        examples=["create_session"],
    )
    method: str = Field(examples=["POST"])
    route: str = Field(examples=["/api/sessions/{id}/start"])
    session_id: str | None = Field(examples=["ses_01JD8X0000000000000000000A"])
    target: dict[str, str] | None = Field(
        description="The route's path parameters as called", examples=[{"id": "sales-team"}]
    )
    fields: list[str] | None = Field(
        description="Names of the body fields sent (never their values)", examples=[["config"]]
    )
    outcome: str = Field(
        description="`ok`, or the error code the call was answered with",
        examples=["ok", "SESSION_EXISTS"],
    )
    status: int | None = Field(description="The HTTP status; null for a first use", examples=[201])
    request_id: str = Field(examples=["req_01JD8X0000000000000000000A"])
