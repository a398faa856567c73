"""Wire schemas of the event log."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from openwa.kit.schema import CamelModel


class LoggedEvent(CamelModel):
    cursor: int = Field(description="Position in the log; pass it as `after` to continue")
    id: str
    event: str
    session_id: str
    timestamp: str
    data: dict[str, Any]
    engine: str
    metadata: dict[str, str]


class EventPage(CamelModel):
    events: list[LoggedEvent]
    next_cursor: int = Field(description="The cursor to continue from (the last one seen)")
