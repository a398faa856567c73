"""The composition root: builds adapters from settings, hands them to services, wires HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from limits.aio.storage import RedisStorage
from redis.asyncio import ConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa import __version__
from openwa.api import ws
from openwa.api.audit import AuditMiddleware
from openwa.api.docs import install_docs
from openwa.api.errors import install_error_handlers
from openwa.api.forwarding import Forwarder, ForwardingMiddleware
from openwa.api.metrics import Metrics
from openwa.api.middleware import RequestContextMiddleware
from openwa.api.routers import (
    audit,
    chats,
    contacts,
    events,
    groups,
    health,
    keys,
    messages,
    mock,
    sessions,
    webhooks,
)
from openwa.api.routers import cluster as cluster_routes
from openwa.api.routers import engines as engine_routes
from openwa.api.routing import flat_routes, operation_id
from openwa.audit.seen import SeenPairs
from openwa.audit.service import AuditService
from openwa.backlog import shared_scrape_reads
from openwa.cache.base import Cache
from openwa.cache.memory import MemoryCache
from openwa.cache.redis import RedisCache
from openwa.chats.service import ChatService
from openwa.cluster.broadcast import Broadcast, NoBroadcast, RedisBroadcast
from openwa.cluster.ownership import Ownership
from openwa.cluster.stream_slots import RedisStreamSlots
from openwa.cluster.sync import ClusterSync
from openwa.config import Settings
from openwa.contacts.service import ContactService
from openwa.dashboard import install_dashboard
from openwa.db import migrate
from openwa.db.encryption import prepare as prepare_encryption
from openwa.db.engine import create_engine, create_reader, create_session_factory
from openwa.db.group_commit import GroupCommit
from openwa.db.instance_lock import InstanceLock, instance_lock, member_lock
from openwa.db.sealing import Sealer
from openwa.db.sealing import install as install_sealing
from openwa.db.unit_of_work import unit_of_work
from openwa.engines.bridge.engine import BAILEYS, WEBJS, BridgeEngine
from openwa.engines.bridge.install import NodeRuntime
from openwa.engines.bridge.profiles import ProfileStore
from openwa.engines.mock.control import MockControl
from openwa.engines.mock.engine import MockEngine
from openwa.engines.mock.store import SqlMockDirectory, SqlMockNetworkStore
from openwa.engines.registry import EngineRegistry
from openwa.engines.whatsmeow.engine import WhatsmeowEngine
from openwa.engines.whatsmeow.store import DeviceStore, whatsmeow_dsn
from openwa.events.bus import InMemoryEventBus
from openwa.events.log import EventLog
from openwa.events.pump import EventPump
from openwa.events.service import EventService
from openwa.events.streams import StreamRegistry
from openwa.groups.service import GroupService
from openwa.health import SharedReadiness
from openwa.keys.principal import Role
from openwa.keys.service import KeyService
from openwa.kit.cipher import Cipher
from openwa.kit.ids import ulid
from openwa.kit.private_files import write_private
from openwa.kit.signal import Signal
from openwa.logs import configure_logging
from openwa.maintenance import Maintenance
from openwa.media.convert import MediaConverter
from openwa.media.ingest import MediaIngest
from openwa.media.links import MediaLinks
from openwa.messages.engine_ids import EngineIds
from openwa.messages.pacing import Pacing, SendInterval
from openwa.messages.reports import ReportApplier
from openwa.messages.sender import STOP_GRACE_S, SendWorker
from openwa.messages.service import MessageService
from openwa.queue import outbox
from openwa.queue.claims import release_all
from openwa.ratelimits.limiter import WindowRateLimits
from openwa.ratelimits.notation import parse_limits
from openwa.ratelimits.port import RateLimits
from openwa.ratelimits.windows import MemoryWindows, StorageWindows
from openwa.services import Services
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.removal import SessionRemoval
from openwa.sessions.runtime import ReconnectPolicy, SessionRuntime
from openwa.sessions.service import SessionService
from openwa.storage.base import Storage
from openwa.storage.object_store import ObjectStorage
from openwa.webhooks.service import WebhookService
from openwa.webhooks.worker import DELIVERIES, DeliveryWorker

log = structlog.get_logger(__name__)

API_DESCRIPTION = """
Self-hosted WhatsApp HTTP API gateway.

Every `/api` route needs an API key in `X-API-Key` (or `Authorization: Bearer`).
Responses use one envelope: `{success, data, meta}` or `{success: false, error, meta}`.
"""


# Tried in this order, so the hottest come first (see `api.routing`); the document
# keeps its reading order (TAG_ORDER).
API_ROUTES = flat_routes(
    (
        sessions.first,
        sessions.router,
        messages.router,
        health.router,
        keys.router,
        engine_routes.router,
        cluster_routes.router,
        audit.router,
        webhooks.session_router,
        webhooks.instance_router,
        events.router,
        chats.router,
        contacts.router,
        groups.router,
        mock.router,
        ws.router,
    )
)


def _build_cache(settings: Settings) -> Cache:
    if settings.cache_type == "redis":
        assert settings.redis_url is not None  # checked by Settings
        # Entries (API keys by hash) belong to this deployment's database: deployments
        # sharing one Redis with the same key never read each other's rows.
        return RedisCache(settings.redis_url, f"openwa:{_database_tag(settings)}:")
    return MemoryCache()


def _build_rate_limits(settings: Settings) -> RateLimits:
    """Counters in this process, or in Redis with `CACHE_TYPE=redis` (the cache's server),
    so that instances behind one balancer share each key's limit."""
    per_role = {
        Role.ADMIN: parse_limits(settings.rate_limit_admin),
        Role.OPERATOR: parse_limits(settings.rate_limit_operator),
        Role.VIEWER: parse_limits(settings.rate_limit_viewer),
    }
    auth_failures = parse_limits(settings.rate_limit_auth_failures)
    if settings.cache_type == "redis":
        assert settings.redis_url is not None  # checked by Settings
        # Our own pool, whatever the URL's scheme (`limits` reads only the scheme here),
        # so that shutdown can close its connections.
        pool = ConnectionPool.from_url(settings.redis_url)
        # `limits` types its pass-through options as scalars; a pool is passed through too.
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=settings.rate_limit_namespace,
            **options,
        )
        windows = StorageWindows(storage, close=pool.aclose)
        return WindowRateLimits(windows, per_role, auth_failures)
    return WindowRateLimits(MemoryWindows(), per_role, auth_failures)


def _stable_instance_id(data_dir: Path) -> str:
    """This instance's id, kept in DATA_DIR so a restart (even after kill -9) knows which
    queued work was its own and can take it back at once instead of waiting for leases."""
    path = data_dir / "instance-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance_id = f"instance-{ulid()}"
        write_private(path, instance_id)
        return instance_id


def build_storage(settings: Settings) -> Storage:
    if settings.storage_type == "s3":
        assert settings.s3_bucket is not None  # checked by Settings
        secret = settings.s3_secret_access_key
        return ObjectStorage.s3(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            region=settings.s3_region,
            force_path_style=settings.s3_force_path_style,
        )
    return ObjectStorage.local(settings.resolved_storage_path)


def _build_broadcast(settings: Settings, instance_id: str) -> Broadcast:
    """Redis pub/sub for a cluster, on a channel of its own database (several clusters,
    or test runs, may share one Redis)."""
    if not settings.clustered:
        return NoBroadcast()
    assert settings.redis_url is not None  # clustered needs CACHE_TYPE=redis (Settings)
    channel = f"openwa:cluster:{_database_tag(settings)}"
    return RedisBroadcast(settings.redis_url, channel, instance_id)


def _database_tag(settings: Settings) -> str:
    """Names a cluster's Redis keys by its database: clusters (and test runs) sharing a
    Redis server never mix."""
    return hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:16]


def build_services(settings: Settings) -> Services:
    db_engine = create_engine(
        settings.resolved_database_url,
        idle_in_transaction_s=settings.session_lease_s if settings.clustered else None,
        command_timeout_s=settings.database_command_timeout_s or None,
        connect_timeout_s=settings.database_connect_timeout_s,
        tcp_timeout_s=settings.database_tcp_timeout_s or None,
    )
    db = create_session_factory(db_engine)
    read_engine = create_reader(settings.resolved_database_url, db_engine)
    db_read = db if read_engine is db_engine else create_session_factory(read_engine)
    cipher = settings.cipher()
    if cipher is not None:
        # Stored secrets are encrypted on flush and decrypted on load (db/sealing.py).
        sealer = Sealer(cipher)
        for factory in (db,) if db_read is db else (db, db_read):
            install_sealing(factory, sealer)
    directory = SessionDirectory()
    directory.watch(db)
    cache = _build_cache(settings)
    storage = build_storage(settings)
    bus = InMemoryEventBus()
    metrics = Metrics()
    events = EventLog()
    events.add_commit_listener(metrics.events_logged)
    pump = EventPump(db_read, events, bus)
    streams = StreamRegistry(
        settings.streams_per_key,
        settings.max_streams,
        shared=(
            RedisStreamSlots(settings.redis_url, f"openwa:streams:{_database_tag(settings)}:")
            if settings.clustered and settings.redis_url
            else None
        ),
    )
    keys = KeyService(cache, read=db_read)
    # A deleted or changed key's open WebSocket and SSE streams end once that commits.
    keys.add_revocation_listener(streams.revoke)
    audit_log = AuditService(db, SeenPairs())
    mock = MockEngine(
        SqlMockNetworkStore(db),
        SqlMockDirectory(db),
        auth_delay_ms=settings.mock_auth_delay_ms,
        ack_delay_ms=settings.mock_ack_delay_ms,
        engine_ids=settings.mock_engine_ids,
        # Mock sessions on other instances reach this one's through the database.
        inbox_poll_s=0.5 if settings.clustered else None,
    )
    whatsmeow = WhatsmeowEngine(
        DeviceStore(
            settings.data_dir / "whatsmeow",
            whatsmeow_dsn(settings.resolved_database_url, settings.database_connect_timeout_s),
            db_engine,
        ),
        log_level=settings.log_level.upper(),
        max_media_bytes=settings.max_media_bytes,
        max_image_dimension=settings.media_max_image_dimension,
        sessions_per_worker=settings.whatsmeow_sessions_per_worker,
        worker_max_mb=settings.whatsmeow_worker_max_mb,
        fence_after_s=_fence_after_s(settings),
    )
    engines = EngineRegistry(
        [mock, whatsmeow, *_bridge_engines(settings, storage, cipher)], default=settings.engine_type
    )
    instance_id = settings.instance_id or _stable_instance_id(settings.data_dir)
    runtime = SessionRuntime(
        db,
        engines,
        events,
        max_sessions=settings.max_sessions,
        reconnect=ReconnectPolicy(settings.reconnect_base_s, settings.reconnect_max_s),
        directory=directory,
        media=storage,
        report_queue_max=settings.engine_report_queue_max,
        # SHUTDOWN_TIMEOUT_S=0 is a shutdown that does not wait, not a stop that drops
        # what its engine reported: a stop's drain then has no bound of its own.
        drain_timeout_s=settings.shutdown_timeout_s or None,
        status_retry_s=settings.engine_report_retry_s,
    )
    ownership = Ownership(
        db,
        instance_id,
        settings.resolved_instance_url,
        lease_s=settings.session_lease_s,
        max_sessions=settings.max_sessions,
        clustered=settings.clustered,
        member=(
            member_lock(settings.resolved_database_url, instance_id) if settings.clustered else None
        ),
    )
    runtime.use_ownership(ownership)
    cluster_sync = (
        ClusterSync(
            db_read,
            _build_broadcast(settings, instance_id),
            directory=directory,
            keys=keys,
            streams=streams,
            events=events,
            queued=runtime.became_ready,
            leases_changed=ownership.scan,
        )
        if settings.clustered
        else None
    )
    ownership.on_dead = _release_claims_of(db)
    ownership.on_take_over = _take_back_sends(db, instance_id)
    wake_deliveries = Signal()
    webhooks = WebhookService(
        events,
        allow_private=settings.webhook_allow_private,
        wake=wake_deliveries,
        max_per_session=settings.webhook_max_per_session,
    )
    deliveries = DeliveryWorker(
        db,
        events,
        wake_deliveries,
        worker_id=instance_id,
        timeout_s=settings.webhook_timeout_s,
        backoff_base_s=settings.webhook_backoff_base_s,
        backoff_max_s=settings.webhook_backoff_max_s,
        max_attempts=settings.webhook_max_attempts,
        allow_private=settings.webhook_allow_private,
        read=db_read,
        concurrency=settings.webhook_concurrency,
        on_results=metrics.webhook_results,
        disable_after=settings.webhook_disable_after,
    )
    media_links = MediaLinks(storage, settings.resolved_public_url, presign=settings.s3_presign)
    messages = MessageService(
        events,
        runtime.became_ready,
        storage,
        media_links,
        directory=directory,
        accepts=GroupCommit(db, name="accepts", carries_requests=True),
        read=db_read,
    )
    engine_ids = EngineIds()
    reports = ReportApplier(
        db,
        events,
        storage,
        media_links,
        GroupCommit(db, name="reports"),
        ids=engine_ids,
        patience_s=settings.engine_report_retry_s,
        read=db_read,
    )
    runtime.set_message_handler(reports.apply_reports)
    runtime.add_start_listener(reports.forget_session)
    directory.add_drop_listener(runtime.session_dropped)
    directory.add_drop_listener(reports.forget_session)
    directory.add_drop_listener(engines.forget_deleted)
    sender = SendWorker(
        db,
        runtime,
        events,
        runtime.became_ready,
        messages,
        worker_id=instance_id,
        directory=directory,
        read=db_read,
        ready_timeout_s=settings.send_ready_timeout_s,
        max_attempts=settings.send_max_attempts,
        backoff_base_s=settings.send_backoff_base_s,
        ids=engine_ids,
        apply_reports=reports.on_engine_events,
        pacing=Pacing(
            SendInterval(min_ms=settings.send_interval_min_ms, max_ms=settings.send_interval_max_ms)
        ),
        # A share of the time to drain: the sessions' stops get what it leaves.
        stop_grace_s=min(STOP_GRACE_S, settings.shutdown_timeout_s / 3),
    )
    # A session's delete, a batch of its rows at a time; maintenance finishes one cut short.
    removal = SessionRemoval(db, events, directory, read=db_read)
    return Services(
        settings=settings,
        db_engine=db_engine,
        read_engine=read_engine,
        db=db,
        db_read=db_read,
        directory=directory,
        cache=cache,
        rate_limits=_build_rate_limits(settings),
        storage=storage,
        bus=bus,
        events=events,
        pump=pump,
        streams=streams,
        engines=engines,
        runtime=runtime,
        ownership=ownership,
        cluster_sync=cluster_sync,
        keys=keys,
        audit=audit_log,
        sessions=SessionService(
            runtime,
            engines,
            events,
            webhooks,
            directory,
            storage,
            removal,
            proxy_allow_private=settings.proxy_allow_private,
        ),
        mock_control=MockControl(directory, runtime, engines),
        messages=messages,
        reports=reports,
        sender=sender,
        webhooks=webhooks,
        deliveries=deliveries,
        media_ingest=MediaIngest(
            max_bytes=settings.max_media_bytes,
            fetch_timeout_s=settings.media_fetch_timeout_s,
            allow_private=settings.webhook_allow_private,
            tmp_dir=settings.data_dir / "tmp",
            converter=MediaConverter.from_settings(settings),
        ),
        groups=GroupService(runtime, engines),
        chats=ChatService(runtime, engines, links=media_links),
        contacts=ContactService(runtime, engines),
        event_reader=EventService(db_read, events, pump),
        maintenance=Maintenance(
            db,
            events,
            storage,
            audit_log,
            event_retention_days=settings.event_retention_days,
            audit_retention_days=settings.audit_retention_days,
            message_retention_days=settings.message_retention_days,
            media_retention_days=settings.media_retention_days,
            read=db_read,
            removal=removal,
        ),
        metrics=metrics,
        cipher=cipher,
    )


def _announce_generated_key(key: str) -> None:
    # Printed once, on the start that created it; it is stored only as a hash.
    print(
        "\n"
        "  OpenWA generated the first admin API key (shown only this once):\n\n"
        f"      {key}\n\n"
        "  Keep it safe, or set API_KEY yourself. Use it as the X-API-Key header.\n",
        file=sys.stdout,
        flush=True,
    )


def _fence_after_s(settings: Settings) -> float:
    """Engine processes fence themselves after half a lease without a heartbeat: by the
    time a lease given up by a silent owner can run out, its connections are down."""
    return settings.session_lease_s / 2


def _bridge_engines(
    settings: Settings, storage: Storage, cipher: Cipher | None
) -> list[BridgeEngine]:
    """Baileys and whatsapp-web.js: nothing starts (or installs) until a session needs it."""
    node = NodeRuntime(settings.node_binary, settings.resolved_node_bridge_dir)
    transfers = settings.data_dir / "bridge"
    level = {"debug": "debug", "info": "info"}.get(settings.log_level, "warn")
    return [
        BridgeEngine(
            BAILEYS,
            node,
            transfers,
            sessions_per_worker=settings.baileys_sessions_per_worker,
            log_level=level,
            max_media_bytes=settings.max_media_bytes,
            fence_after_s=_fence_after_s(settings),
            max_image_dimension=settings.media_max_image_dimension,
        ),
        BridgeEngine(
            WEBJS,
            node,
            transfers,
            sessions_per_worker=settings.webjs_sessions_per_worker,
            max_sessions=settings.webjs_max_sessions,
            chromium_path=settings.chromium_path,
            worker_max_mb=settings.webjs_worker_max_mb,
            log_level=level,
            profiles=ProfileStore(storage, cipher),
            max_media_bytes=settings.max_media_bytes,
            fence_after_s=_fence_after_s(settings),
        ),
    ]


def _release_claims_of(
    db: async_sessionmaker[AsyncSession],
) -> Callable[[set[str]], Awaitable[None]]:
    """Give back what dead instances had claimed from the durable queues: sends (the
    sessions' new owners send them, under the same ids) and webhook deliveries."""

    async def release(instances: set[str]) -> None:
        async with db() as session, session.begin():
            for worker in sorted(instances):
                await release_all(session, outbox.SENDS, worker)
                await release_all(session, DELIVERIES, worker)

    return release


def _take_back_sends(
    db: async_sessionmaker[AsyncSession], instance_id: str
) -> Callable[[str], Awaitable[None]]:
    """A session taken over here: the sends its last owner had claimed are ours now
    (that owner may be paused, holding them for a minute)."""

    async def take_back(session_id: str) -> None:
        async with db() as session, session.begin():
            await outbox.take_back(session, session_id, instance_id)

    return take_back


def _locks(settings: Settings, member: InstanceLock | None) -> list[InstanceLock]:
    """Alone: the database's exclusive lock. Clustered: its shared lock (no lone instance
    meanwhile) and this member's own, which tells the others it lives."""
    url = settings.resolved_database_url
    if member is None:
        return [instance_lock(url)]
    return [instance_lock(url, shared=True), member]


def _forwarder(settings: Settings, instance_id: str) -> Forwarder | None:
    """Clustered: live calls for sessions another instance runs are replayed there."""
    if settings.cluster_secret is None:
        return None
    return Forwarder(settings.cluster_secret.get_secret_value().encode(), instance_id)


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.log_level, settings.resolved_log_format)
    services = build_services(settings)
    locks = _locks(settings, services.ownership.member)
    if services.ownership.member is None:
        services.ownership.alone_lock = locks[0]
    forwarder = _forwarder(settings, services.ownership.instance_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        generated: list[str] = []

        async def bootstrap() -> None:
            api_key = settings.api_key.get_secret_value() if settings.api_key else None
            async with unit_of_work(services.db) as db:
                # Refuses a wrong or missing ENCRYPTION_KEY before anything else is read.
                encrypted = await prepare_encryption(db, services.cipher)
                key = await services.keys.bootstrap(db, api_key)
            if encrypted:
                log.info("encrypted_at_rest", values=encrypted)
            if key:
                generated.append(key)
            if settings.webhook_url:
                # Under the migration lock too: instances starting together would each
                # find no env webhook and make one, and every event would go twice.
                secret = settings.webhook_secret
                events = [e.strip() for e in settings.webhook_events.split(",") if e.strip()]
                async with unit_of_work(services.db) as db:
                    await services.webhooks.register_from_env(
                        db,
                        settings.webhook_url,
                        secret.get_secret_value() if secret else None,
                        events,
                    )

        await migrate.upgrade(services.db_engine, after=bootstrap)
        await services.directory.load(services.db)
        if services.cluster_sync is not None:
            await services.cluster_sync.start()
        for key in generated:
            _announce_generated_key(key)
        await services.pump.start()
        if not settings.clustered:
            await services.runtime.restore()
        # Joins the members; clustered, takes the sessions no live instance runs.
        await services.ownership.start()
        # Work this instance had claimed when it last stopped (or died) is taken back now.
        await services.sender.release_claims()
        await services.deliveries.release_claims()
        await services.sender.start()
        await services.deliveries.start()
        await services.maintenance.start()
        if forwarder is not None:
            await forwarder.open()
        app.state.draining = False
        log.info("started", version=__version__, public_url=settings.resolved_public_url)
        try:
            yield
        finally:
            app.state.draining = True
            await app.state.readiness.close()  # a check nobody waits for any more
            await app.state.scrape_reads.close()
            await services.ownership.drain()
            await services.maintenance.stop()
            stopping = asyncio.get_running_loop().time()
            await services.sender.stop()  # the sends in hand finish first
            left = settings.shutdown_timeout_s - (asyncio.get_running_loop().time() - stopping)
            # Each session stops in turn: its engine is disconnected, the reports it
            # had handed over are written (runtime `_drain`), and its lease is given
            # back, so others take it at once.
            try:
                async with asyncio.timeout(max(0.0, left)):
                    await services.runtime.shutdown()
            except TimeoutError:
                # What still runs goes down with its engine processes, before the rest
                # of the leases are given back: never two instances on one session.
                # Their queued reports are lost (counted here; the drain cut short logs
                # its own).
                log.warning(
                    "shutdown_timeout",
                    running=services.runtime.running_count,
                    reports_not_written=services.runtime.reports_queued,
                )
                await services.engines.close()
            await services.ownership.leave()
            # After the sessions: their drains wrote through the reports' group writer.
            await services.messages.close()
            await services.reports.close()
            await services.audit.close()
            await services.deliveries.stop()
            await services.pump.stop()
            await services.engines.close()
            await services.bus.close()
            if services.cluster_sync is not None:
                await services.cluster_sync.stop()
            await services.streams.close()
            await services.cache.close()
            await services.rate_limits.close()
            if forwarder is not None:
                await forwarder.close()
            services.directory.unwatch()
            if services.read_engine is not services.db_engine:
                await services.read_engine.dispose()
            await services.db_engine.dispose()
            log.info("stopped")

    @asynccontextmanager
    async def locked_lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything touches the database, so a refused instance leaves it untouched;
        # released last, so a successor starts only once this one has let go of everything.
        held: list[InstanceLock] = []
        try:
            for lock in locks:
                await lock.acquire()
                held.append(lock)
            async with lifespan(app):
                yield
        finally:
            for lock in reversed(held):
                await lock.release()

    app = FastAPI(
        title="OpenWA",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=locked_lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry wraps every request; we export Prometheus
        # metrics and structured logs instead, and it cost a tenth of a session GET.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Operation ids are the endpoints' names (`create_session`), which clients
        # generated from the document take as their function names.
        generate_unique_id_function=operation_id,
        routes=API_ROUTES,
        # `/api/sessions/` is no route: a 404 in our envelope, not Starlette's bare 307
        # before authentication, whose Location was built from the request's Host.
        redirect_slashes=False,
    )
    app.state.services = services
    app.state.readiness = SharedReadiness(services)
    app.state.scrape_reads = shared_scrape_reads(services)
    app.state.draining = False
    install_error_handlers(app, forwarder)
    install_docs(app, API_ROUTES)
    install_dashboard(app)
    # Innermost: inside the request id and the body limit, so what they refuse (no route
    # matched) is not an operation's call.
    app.add_middleware(AuditMiddleware, state=app.state)
    if settings.cluster_secret is not None:
        # Outside the audit (it records the forwarded client's address), inside the body
        # limit (it reads a forwarded body to check its proof).
        app.add_middleware(
            ForwardingMiddleware,
            secret=settings.cluster_secret.get_secret_value().encode(),
            max_body_bytes=settings.max_body_bytes,
            seen=services.cache,
        )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_media_bytes=settings.max_media_bytes,
        metrics=services.metrics,
        state=app.state,
    )
    return app
