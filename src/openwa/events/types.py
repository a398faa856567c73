"""The event envelope every consumer sees (webhooks, WebSocket, event log)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openwa.kit.clock import iso, utcnow
from openwa.kit.ids import new_id

SESSION_STATUS = "session.status"
SESSION_QR = "session.qr"


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    session_id: str
    engine: str
    data: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("evt"))
    timestamp: datetime = field(default_factory=utcnow)

    def envelope(self) -> dict[str, Any]:
        """The wire form: `{id, event, sessionId, timestamp, data, engine, metadata}`."""
        return {
            "id": self.id,
            "event": self.event,
            "sessionId": self.session_id,
            "timestamp": iso(self.timestamp),
            "data": self.data,
            "engine": self.engine,
            "metadata": self.metadata,
        }
