"""Wire schemas of API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, Strict

from openwa.keys.principal import Role
from openwa.kit.schema import CamelModel, StrictCamelModel


class ApiKeyCreate(StrictCamelModel):
    name: str = Field(
        min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["crm-integration"]
    )
    role: Annotated[Role, Strict(False)] = Field(examples=["operator"])
    sessions: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Session ids or names this key is limited to; omitted means all",
        examples=[["sales-team"]],
    )


class ApiKey(CamelModel):
    id: str = Field(examples=["key_01JD8X0000000000000000000A"])
    name: str
    role: Role
    prefix: str = Field(description="The first characters of the key, to recognise it")
    sessions: list[str] | None
    source: str = Field(description="api, env (API_KEY) or generated (first start)")
    created_at: datetime


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself; shown only in this response")
