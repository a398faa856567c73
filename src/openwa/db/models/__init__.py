"""Every table, imported so that `Base.metadata` knows them all (Alembic reads it)."""

from openwa.db.models.api_key import ApiKeyRow
from openwa.db.models.audit import AuditRow, KeyAddressRow
from openwa.db.models.cluster import InstanceRow, SessionLeaseRow
from openwa.db.models.contact import ContactRow
from openwa.db.models.encryption_state import EncryptionStateRow
from openwa.db.models.engine_auth import EngineAuthRow
from openwa.db.models.event import CounterRow, EventRow
from openwa.db.models.idempotency import IdempotencyRow
from openwa.db.models.media_tombstone import MediaTombstoneRow
from openwa.db.models.message import MessageRow
from openwa.db.models.mock_network import (
    MockAccountRow,
    MockConnectionRow,
    MockGroupMemberRow,
    MockGroupRow,
    MockInboxRow,
    MockTransmissionRow,
)
from openwa.db.models.outbox import OutboxJobRow
from openwa.db.models.pending_edit import PendingEditRow
from openwa.db.models.session import SessionRow
from openwa.db.models.set_aside import SetAsideReportRow
from openwa.db.models.webhook import DeliveryAttemptRow, DeliveryRow, WebhookRow

__all__ = [
    "ApiKeyRow",
    "AuditRow",
    "ContactRow",
    "CounterRow",
    "DeliveryAttemptRow",
    "DeliveryRow",
    "EncryptionStateRow",
    "EngineAuthRow",
    "EventRow",
    "IdempotencyRow",
    "InstanceRow",
    "KeyAddressRow",
    "MediaTombstoneRow",
    "MessageRow",
    "MockAccountRow",
    "MockConnectionRow",
    "MockGroupMemberRow",
    "MockGroupRow",
    "MockInboxRow",
    "MockTransmissionRow",
    "OutboxJobRow",
    "PendingEditRow",
    "SessionLeaseRow",
    "SessionRow",
    "SetAsideReportRow",
    "WebhookRow",
]
