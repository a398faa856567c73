"""The services and adapters one app instance holds, built by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from openwa.api.metrics import Metrics
from openwa.audit.service import AuditService
from openwa.cache.base import Cache
from openwa.chats.service import ChatService
from openwa.cluster.ownership import Ownership
from openwa.cluster.sync import ClusterSync
from openwa.config import Settings
from openwa.contacts.service import ContactService
from openwa.engines.mock.control import MockControl
from openwa.engines.registry import EngineRegistry
from openwa.events.bus import EventBus
from openwa.events.log import EventLog
from openwa.events.pump import EventPump
from openwa.events.service import EventService
from openwa.events.streams import StreamRegistry
from openwa.groups.service import GroupService
from openwa.keys.service import KeyService
from openwa.kit.cipher import Cipher
from openwa.maintenance import Maintenance
from openwa.media.ingest import MediaIngest
from openwa.messages.reports import ReportApplier
from openwa.messages.sender import SendWorker
from openwa.messages.service import MessageService
from openwa.ratelimits.port import RateLimits
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.runtime import SessionRuntime
from openwa.sessions.service import SessionService
from openwa.storage.base import Storage
from openwa.webhooks.service import WebhookService
from openwa.webhooks.worker import DeliveryWorker


@dataclass
class Services:
    settings: Settings
    db_engine: AsyncEngine
    # Reads beside the writer (SQLite); the writer itself on PostgreSQL.
    read_engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    db_read: async_sessionmaker[AsyncSession]
    directory: SessionDirectory
    cache: Cache
    rate_limits: RateLimits
    storage: Storage
    bus: EventBus
    events: EventLog
    pump: EventPump
    streams: StreamRegistry
    engines: EngineRegistry
    runtime: SessionRuntime
    ownership: Ownership
    cluster_sync: ClusterSync | None
    keys: KeyService
    audit: AuditService
    sessions: SessionService
    mock_control: MockControl
    messages: MessageService
    reports: ReportApplier
    sender: SendWorker
    webhooks: WebhookService
    deliveries: DeliveryWorker
    event_reader: EventService
    maintenance: Maintenance
    media_ingest: MediaIngest
    groups: GroupService
    chats: ChatService
    contacts: ContactService
    metrics: Metrics
    # ENCRYPTION_KEY's cipher; None keeps stored secrets in clear.
    cipher: Cipher | None = None
