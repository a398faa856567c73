"""Every table, imported so that `Base.metadata` knows them all (Alembic reads it)."""

from openwa.db.models.api_key import ApiKeyRow
from openwa.db.models.engine_auth import EngineAuthRow
from openwa.db.models.event import CounterRow, EventRow
from openwa.db.models.idempotency import IdempotencyRow
from openwa.db.models.message import MessageRow
from openwa.db.models.mock_network import MockInboxRow, MockTransmissionRow
from openwa.db.models.outbox import OutboxJobRow
from openwa.db.models.session import SessionRow
from openwa.db.models.webhook import DeliveryAttemptRow, DeliveryRow, WebhookRow

__all__ = [
    "ApiKeyRow",
    "CounterRow",
    "DeliveryAttemptRow",
    "DeliveryRow",
    "EngineAuthRow",
    "EventRow",
    "IdempotencyRow",
    "MessageRow",
    "MockInboxRow",
    "MockTransmissionRow",
    "OutboxJobRow",
    "SessionRow",
    "WebhookRow",
]
