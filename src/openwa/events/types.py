"""The event envelope every consumer sees (webhooks, WebSocket, event log)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openwa.kit.clock import iso, utcnow
from openwa.kit.ids import new_id

SESSION_STATUS = "session.status"
SESSION_QR = "session.qr"
MESSAGE_RECEIVED = "message.received"
MESSAGE_SENT = "message.sent"
MESSAGE_ACK = "message.ack"
MESSAGE_REVOKED = "message.revoked"
MESSAGE_REACTION = "message.reaction"
GROUP_UPDATE = "group.update"
WEBHOOK_TEST = "webhook.test"

EVENT_NAMES = (
    SESSION_STATUS,
    SESSION_QR,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    MESSAGE_ACK,
    MESSAGE_REVOKED,
    MESSAGE_REACTION,
    GROUP_UPDATE,
    WEBHOOK_TEST,
)


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    session_id: str
    engine: str
    data: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("evt"))
    timestamp: datetime = field(default_factory=utcnow)
    # The event log's cursor, once the event is stored.
    cursor: int | None = None

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
