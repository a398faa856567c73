"""Settings: the one place that reads the environment (and `.env`).

Names are those of the configuration table in README.md. `create_app` receives a `Settings`
object and passes what each part needs; nothing else reads environment variables.
"""

from __future__ import annotations

import functools
import sys
import typing
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openwa.kit.cipher import Cipher, CipherError, parse_key
from openwa.ratelimits.notation import parse_limits


def _engine_alias(value: object) -> object:
    """whatsapp-web.js is also accepted under its package's name."""
    return "webjs" if value == "whatsapp-web.js" else value


EngineName = Annotated[
    Literal["mock", "whatsmeow", "baileys", "webjs"], BeforeValidator(_engine_alias)
]


class Settings(BaseSettings):
    """Validated configuration; refuses obviously unsafe values at start-up."""

    # Without the input in errors: a bad setting's message is printed at start-up, and it
    # quoted the value (a short API_KEY, a WEBHOOK_SECRET), or the whole settings cut to
    # its ends (the tail of a valid secret) for a mistake elsewhere.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    # Where the server listens and how it names itself.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    forwarded_allow_ips: str = "127.0.0.1"
    cors_origins: str = ""
    http_keepalive_s: int = Field(default=75, ge=1, le=3600)

    # Local state: the SQLite file, local media and engines' own files.
    data_dir: Path = Path("./data")
    database_url: str | None = None
    # PostgreSQL, on this side (db/dead_peer.py): how long the database's host may leave
    # what we sent unacknowledged before its connection is taken as dead (0: the
    # kernel's own, many minutes); how long a connect may take; and a bound on every
    # statement (0: none; it cuts slow statements off too).
    database_tcp_timeout_s: float = Field(default=30, ge=0, le=3600)
    database_connect_timeout_s: float = Field(default=10, ge=1, le=3600)
    database_command_timeout_s: float = Field(default=0, ge=0, le=86400)

    # Media storage: local files under STORAGE_PATH, or any S3-compatible server.
    storage_type: Literal["local", "s3"] = "local"
    storage_path: Path | None = None
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_force_path_style: bool = True
    s3_presign: bool = False
    media_fetch_timeout_s: float = Field(default=30.0, gt=0)

    # Retention of stored messages and media (the event log has its own).
    message_retention_days: int = Field(default=90, ge=1)
    media_retention_days: int = Field(default=30, ge=1)

    # Cache: in-process by default, Redis for several instances.
    cache_type: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None

    # Engines and sessions.
    engine_type: EngineName = "whatsmeow"
    max_sessions: int = Field(default=100, ge=1)
    # A session's reports waiting to be written at which its engine is asked to hold
    # back (engines/flow.py); it goes on once half of them are written.
    engine_report_queue_max: int = Field(default=10_000, ge=1)
    # How long a run of reports the database refuses for a reason of the moment (away,
    # busy, a deadlock lost) is tried again before it is set aside (messages/reports.py).
    engine_report_retry_s: float = Field(default=300, ge=0, le=86400)
    send_ready_timeout_s: int = Field(default=86400, ge=0)
    shutdown_timeout_s: int = Field(default=30, ge=0)
    instance_id: str | None = None
    instance_url: str | None = None
    # Ownership of sessions among instances (docs/deployment.md): each owner renews its
    # leases every third of SESSION_LEASE_S (and its engine processes drop their
    # connections after half of it without a word from it: docs/engines.md, Fencing).
    # CLUSTER_SECRET turns several instances on one database on, and authenticates what
    # they forward to each other.
    session_lease_s: float = Field(default=15.0, ge=3.0, le=300.0)
    cluster_secret: SecretStr | None = None

    # whatsmeow: sessions per worker process (a shard; a dead worker takes only its own
    # down), and the resident memory over which a worker is recycled (unset: no budget).
    whatsmeow_sessions_per_worker: int = Field(default=50, ge=1)
    # A safety net against leaks: about 20 times what a worker of 50 idle sessions holds
    # (docs/BENCHMARKS.md, Memory per idle session); empty turns the budget off.
    whatsmeow_worker_max_mb: int | None = Field(default=2048, ge=64)

    # Baileys and whatsapp-web.js run in Node.js bridge processes (docs/bridge.md): the
    # `node` to run them with, where their dependencies are installed (default
    # `{DATA_DIR}/engines/node`), sessions per bridge process, and what whatsapp-web.js
    # (one browser per session, hundreds of MB each) may take.
    node_binary: str = "node"
    node_bridge_dir: Path | None = None
    baileys_sessions_per_worker: int = Field(default=50, ge=1)
    webjs_sessions_per_worker: int = Field(default=5, ge=1)
    webjs_max_sessions: int = Field(default=10, ge=1)
    webjs_worker_max_mb: int | None = Field(default=None, ge=256)
    chromium_path: str | None = None

    # Authentication: the first admin key.
    api_key: SecretStr | None = None
    metrics_require_key: bool = False

    # Encryption at rest of engine auth state and stored secrets (32 bytes, base64url).
    encryption_key: SecretStr | None = None
    # Only `openwa keys rotate-encryption` reads it: the key to re-encrypt with.
    encryption_key_new: SecretStr | None = None

    # Request rate limits in `limits` notation (`50/second`, `10/minute; 100/hour`);
    # empty: no limit. Per key by its role, and failed authentication per client address.
    rate_limit_admin: str = "50/second"
    rate_limit_operator: str = "20/second"
    rate_limit_viewer: str = "20/second"
    rate_limit_auth_failures: str = "10/minute"
    # Prefix of the counters in Redis (CACHE_TYPE=redis): instances that share it share limits.
    rate_limit_namespace: str = Field(default="openwa:ratelimit", min_length=1)

    # Limits.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_media_bytes: int = Field(default=67_108_864, ge=1024)

    # Media conversions (ffmpeg): how many at once, and the caps of each one.
    ffmpeg_path: str | None = None
    media_conversion_concurrency: int = Field(default=2, ge=1)
    media_conversion_timeout_s: float = Field(default=120.0, gt=0)
    media_conversion_cpu_s: int = Field(default=60, ge=1)
    media_conversion_memory_mb: int = Field(default=1024, ge=256)
    media_max_duration_s: int = Field(default=1800, ge=1)
    media_max_image_dimension: int = Field(default=4096, ge=16, le=16384)

    # Sends: engine failures are retried with backoff this many times, then the message fails.
    send_max_attempts: int = Field(default=5, ge=1)
    send_backoff_base_s: float = Field(default=1.0, gt=0)
    # A random gap between two sends of a session (messages/pacing.py); 0: none.
    send_interval_min_ms: int = Field(default=0, ge=0, le=600_000)
    send_interval_max_ms: int | None = Field(default=None, ge=0, le=600_000)

    # Webhooks: delivery timeout, retries, and the instance-wide one from the environment.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_base_s: float = Field(default=1.0, gt=0)
    webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1)
    webhook_concurrency: int = Field(default=16, ge=1)
    # A webhook with no successful delivery for this long, still failing, is switched
    # off (webhooks/failing.py); 0 never.
    webhook_disable_after_days: float = Field(default=5.0, ge=0)
    # Webhooks a session may hold (config ones included), and instance-wide ones: every
    # event goes to each, so the cap bounds one event's deliveries. At least the 10 a
    # session's config may list.
    webhook_max_per_session: int = Field(default=20, ge=10, le=1000)
    webhook_allow_private: bool = False
    # Session proxies on loopback, private or link-local addresses (refused unless true).
    proxy_allow_private: bool = False
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_events: str = "*"

    # Audit log: mutating calls and first uses of keys from new addresses, kept this long.
    audit_retention_days: int = Field(default=90, ge=1)

    # Event log and live streams.
    event_retention_days: int = Field(default=7, ge=1)
    ws_max_queue: int = Field(default=1000, ge=1)
    # Open WebSocket and SSE streams: per key, and on this instance (429 / 1013 over).
    streams_per_key: int = Field(default=20, ge=1)
    max_streams: int = Field(default=1000, ge=1)

    # Mock engine pacing.
    mock_auth_delay_ms: int = Field(default=1500, ge=0)
    mock_ack_delay_ms: int = Field(default=200, ge=0)
    # `ours`: the mock sends under our message ids (as the contract's engines should);
    # `own`: under ids of its own, reported as engine ids, as whatsmeow does (tests).
    mock_engine_ids: Literal["ours", "own"] = "ours"

    # Reconnect policy after an engine reports a lost connection.
    reconnect_base_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)

    # Logging.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: object) -> object:
        # `API_KEY=` in a .env file means "not set", not "the empty key"; for every
        # setting that may be unset, so that `STORAGE_PATH=` is not the working directory
        # (`Path("")`) and `LOG_FORMAT=` does not stop the start.
        if not isinstance(values, dict):
            return values
        return {
            name: None if value == "" and name in _may_be_unset() else value
            for name, value in values.items()
        }

    @field_validator(
        "rate_limit_admin",
        "rate_limit_operator",
        "rate_limit_viewer",
        "rate_limit_auth_failures",
    )
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        parse_limits(value)  # a bad value refuses the start here, not on the first request
        return value

    @field_validator("database_tcp_timeout_s")
    @classmethod
    def _tcp_timeout_not_below_retransmits(cls, value: float) -> float:
        # Under a few seconds, ordinary retransmits would end healthy connections.
        if 0 < value < 5:
            raise ValueError("DATABASE_TCP_TIMEOUT_S must be 0 (off) or at least 5")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.cache_type == "redis" and not self.redis_url:
            raise ValueError("CACHE_TYPE=redis needs REDIS_URL")
        if self.storage_type == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE_TYPE=s3 needs S3_BUCKET")
        if self.cluster_secret is not None:
            self._check_cluster()
        if self.send_interval_max_ms is not None and (
            self.send_interval_max_ms < self.send_interval_min_ms
        ):
            raise ValueError("SEND_INTERVAL_MAX_MS must be at least SEND_INTERVAL_MIN_MS")
        key = self.api_key.get_secret_value() if self.api_key else None
        if key is not None and len(key) < 16:
            raise ValueError("API_KEY must be at least 16 characters")
        for name, secret in (
            ("ENCRYPTION_KEY", self.encryption_key),
            ("ENCRYPTION_KEY_NEW", self.encryption_key_new),
        ):
            if secret is not None:
                try:
                    parse_key(secret.get_secret_value())
                except CipherError as exc:
                    raise ValueError(str(exc).replace("ENCRYPTION_KEY", name, 1)) from None
        return self

    def _check_cluster(self) -> None:
        """Several instances share everything a session needs: refused at start, with
        the reason, rather than found out when a session moves and its state is not there."""
        assert self.cluster_secret is not None
        if len(self.cluster_secret.get_secret_value()) < 16:
            raise ValueError("CLUSTER_SECRET must be at least 16 characters")
        if self.resolved_database_url.startswith("sqlite"):
            raise ValueError(
                "CLUSTER_SECRET (several instances) needs PostgreSQL in DATABASE_URL: "
                "a SQLite file, and the whatsmeow device store in it, belong to one machine"
            )
        if self.storage_type != "s3":
            raise ValueError(
                "CLUSTER_SECRET (several instances) needs STORAGE_TYPE=s3: local media "
                "files are not seen by the other instances"
            )
        if self.cache_type != "redis":
            raise ValueError(
                "CLUSTER_SECRET (several instances) needs CACHE_TYPE=redis: key revocations, "
                "rate limits and stream caps must hold across instances"
            )

    @property
    def clustered(self) -> bool:
        return self.cluster_secret is not None

    @property
    def webhook_disable_after(self) -> timedelta | None:
        days = self.webhook_disable_after_days
        return timedelta(days=days) if days > 0 else None

    @property
    def resolved_instance_url(self) -> str:
        return (self.instance_url or self.resolved_public_url).rstrip("/")

    def cipher(self) -> Cipher | None:
        """The cipher of ENCRYPTION_KEY, or None when values are kept in clear."""
        key = self.encryption_key
        return Cipher.from_text(key.get_secret_value()) if key is not None else None

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'openwa.db'}"

    @property
    def resolved_storage_path(self) -> Path:
        return self.storage_path or self.data_dir / "media"

    @property
    def resolved_node_bridge_dir(self) -> Path:
        return self.node_bridge_dir or self.data_dir / "engines" / "node"

    @property
    def resolved_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@functools.cache
def _may_be_unset() -> frozenset[str]:
    """The settings whose type allows None (unset)."""
    return frozenset(
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is not None and type(None) in typing.get_args(field.annotation)
    )
