"""The event envelope every consumer sees (webhooks, WebSocket, event log)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
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
MESSAGE_EDITED = "message.edited"
MESSAGE_POLL_VOTE = "message.poll_vote"
MESSAGE_UNKNOWN = "message.unknown"
PRESENCE_UPDATE = "presence.update"
CALL_RECEIVED = "call.received"
GROUP_UPDATE = "group.update"
CHAT_UPDATE = "chat.update"
CONTACT_UPDATE = "contact.update"
SESSION_CREATED = "session.created"
SESSION_DELETED = "session.deleted"
WEBHOOK_TEST = "webhook.test"

EVENT_NAMES = (
    SESSION_STATUS,
    SESSION_QR,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    MESSAGE_ACK,
    MESSAGE_REVOKED,
    MESSAGE_REACTION,
    MESSAGE_EDITED,
    MESSAGE_POLL_VOTE,
    MESSAGE_UNKNOWN,
    PRESENCE_UPDATE,
    CALL_RECEIVED,
    GROUP_UPDATE,
    CHAT_UPDATE,
    CONTACT_UPDATE,
    SESSION_CREATED,
    SESSION_DELETED,
    WEBHOOK_TEST,
)

# Events a `"*"` filter (webhooks, streams) leaves out: delivered only when named, so a
# consumer that takes everything is not handed messages we could not translate.
ONLY_WHEN_NAMED = frozenset({MESSAGE_UNKNOWN})


def wanted(filters: Collection[str], event: str) -> bool:
    """Whether an event filter (`["*"]`, or names) takes `event`."""
    # Called per webhook for every event fanned out: filters are short lists, searched
    # as they are rather than copied into a set each time.
    return event in filters or ("*" in filters and event not in ONLY_WHEN_NAMED)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`wanted` as a query on the event log: the names to take (None: any) and those to
    leave out."""

    names: tuple[str, ...] | None
    leave_out: tuple[str, ...] = ()

    @classmethod
    def of(cls, filters: Iterable[str] | None) -> EventFilter:
        """The filter a reader asked for; none is `"*"`."""
        names = set(filters or ["*"])
        if "*" in names:
            return cls(None, tuple(sorted(ONLY_WHEN_NAMED - names)))
        return cls(tuple(sorted(names)))


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
