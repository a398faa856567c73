"""Three real instances on one database: starting them, signalling them, reading their
shared state.

The instances are started the way docs/deployment.md tells a reader to:
`tools/cluster-example.sh name:port`, which becomes that instance's server (exec), so a
signal sent to the process reaches the server itself. What the tests read about
ownership they read from the database (`session_leases`, `instances`, the mock's
`mock_connections` and `mock_transmissions`), which every instance writes and none
keeps to itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster.ownership import Ownership
from openwa.db.instance_lock import live_member_keys, member_key
from openwa.db.models import SessionRow
from openwa.kit.clock import utcnow
from tests.fixtures.app import GENEROUS_RATE_LIMITS
from tests.fixtures.databases import PG_HOST, PG_PORT, PG_USER, pg_url
from tests.fixtures.redis import LOCAL_REDIS
from tests.fixtures.s3 import S3Server
from tests.fixtures.server import free_port, is_openwa_health

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "cluster-example.sh"
REDIS_URL = os.environ.get("OPENWA_TEST_REDIS_URL", LOCAL_REDIS)
LEASE_S = 3.0
SHUTDOWN_TIMEOUT_S = 10
READY = "ready"


def now() -> datetime:
    return datetime.now(UTC)


def wait_for(
    check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1
) -> tuple[T, float]:
    """Poll `check` until it gives something other than None/False: (it, seconds taken)."""
    started = time.monotonic()
    last: T | None = None
    while time.monotonic() - started < timeout:
        last = check()
        if last:
            return last, time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


class Database:
    """The cluster's PostgreSQL database, read directly (as an operator would)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = pg_url(name)

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, database=self.name
            )
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def live_members(self, names: Iterable[str]) -> set[str]:
        """Which of these instances hold their member lock now (as the others see it)."""

        async def run() -> set[int]:
            conn = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, database=self.name
            )
            try:
                return await live_member_keys(_AsyncpgRows(conn))
            finally:
                await conn.close()

        keys = asyncio.run(run())
        return {name for name in names if member_key(name) in keys}

    def activity(self) -> list[str]:
        """What the database is busy with (for a failure's message)."""
        rows = self.fetch(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS age,"
            " left(query, 120) AS query FROM pg_stat_activity"
            " WHERE datname = current_database() AND state <> 'idle'"
            " AND pid <> pg_backend_pid()"
        )
        return [str(dict(r)) for r in rows]

    def leases(self) -> dict[str, tuple[str, int]]:
        """session -> (owner, epoch)."""
        rows = self.fetch("SELECT session_id, owner, epoch FROM session_leases")
        return {r["session_id"]: (r["owner"], r["epoch"]) for r in rows}

    def statuses(self) -> dict[str, str]:
        rows = self.fetch("SELECT id, status FROM sessions")
        return {r["id"]: r["status"] for r in rows}

    def open_connections(self) -> dict[str, list[tuple[str, int]]]:
        """session -> [(instance, epoch)] of its connections the mock shows open."""
        rows = self.fetch(
            "SELECT session_id, instance, epoch FROM mock_connections WHERE ended_at IS NULL"
        )
        found: dict[str, list[tuple[str, int]]] = {}
        for r in rows:
            found.setdefault(r["session_id"], []).append((r["instance"], r["epoch"]))
        return found

    def connections(self) -> list[asyncpg.Record]:
        return self.fetch(
            "SELECT id, session_id, instance, epoch, connected_at, ended_at, end_reason"
            " FROM mock_connections ORDER BY session_id, connected_at, id"
        )

    def received(self, message_ids: Iterable[str]) -> dict[str, int]:
        """How many `message.received` events each message id raised (at any recipient)."""
        rows = self.fetch(
            "SELECT data::jsonb ->> 'id' AS id, count(*) AS n FROM events"
            " WHERE event = 'message.received' AND data::jsonb ->> 'id' = ANY($1::text[])"
            " GROUP BY 1",
            list(message_ids),
        )
        return {r["id"]: r["n"] for r in rows}

    def sends(self, message_ids: Iterable[str]) -> list[str]:
        """Where these messages stand: status, and their send job's claim (a failure's
        message)."""
        rows = self.fetch(
            "SELECT m.id, m.session_id, m.status, m.error, m.created_at, o.locked_by,"
            " o.locked_until, o.attempts, o.done, l.owner, l.epoch FROM messages m"
            " LEFT JOIN outbox_jobs o ON o.message_id = m.id"
            " LEFT JOIN session_leases l ON l.session_id = m.session_id"
            " WHERE m.id = ANY($1::text[]) AND m.from_me",
            list(message_ids),
        )
        return [str(dict(r)) for r in rows]

    def transmissions(self, message_ids: Iterable[str]) -> list[asyncpg.Record]:
        return self.fetch(
            "SELECT session_id, message_id, instance, epoch, created_at, payload"
            " FROM mock_transmissions WHERE message_id = ANY($1::text[])",
            list(message_ids),
        )


class _AsyncpgRows:
    """`live_member_keys` on an asyncpg connection (it expects SQLAlchemy's `execute`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Any) -> _AsyncpgRows:
        self._rows = await self._conn.fetch(str(statement))
        return self

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._rows]


@dataclass
class Instance:
    """One `openwa serve`, started through the example script; restartable."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # When this test run stopped it by signal, and how (for judging its connections).
    killed_at: datetime | None = None
    paused_at: datetime | None = None
    serving: bool = False  # answered /health/ready since it was last started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self) -> None:
        self.serving = False
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", str(SCRIPT), f"{self.name}:{self.port}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            try:
                return is_openwa_health(httpx.get(self.url + "/health/ready", timeout=1))
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, f"instance {self.name} to be ready")
        self.serving = True

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.serving = False
        self.killed_at = now()
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)
        self.process = None

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM and wait: (exit code, seconds it took)."""
        assert self.process is not None
        started = time.monotonic()
        self.serving = False
        self.signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code, time.monotonic() - started

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def complaints(self, last: int = 12) -> list[str]:
        """The last warnings and errors in the log (for a failure's message)."""
        found = [
            line[:400]
            for line in self.log().splitlines()
            if '"warning"' in line or '"error"' in line or "Traceback" in line
        ]
        return found[-last:]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=10)


@dataclass
class Cluster:
    """Three instances (`a`, `b`, `c`) on one database, one Redis, one S3 bucket."""

    database: Database
    s3: S3Server
    bucket: str
    directory: Path
    api_key: str = field(default_factory=lambda: "cluster-" + secrets.token_hex(16))
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    # Rate limit counters of this run only (the auth cache is keyed by the key's hash,
    # and the key is this run's own).
    namespace: str = field(default_factory=lambda: "openwa-test-" + secrets.token_hex(6))
    instances: dict[str, Instance] = field(default_factory=dict)
    # Which instance each session was created through (its directory knows it).
    created_on: dict[str, str] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)
    # Settings on top of the defaults below (the benchmark's lease, say).
    overrides: dict[str, str] = field(default_factory=dict)
    # When instance b was paused and resumed (the SIGSTOP test).
    paused_window: tuple[datetime, datetime] | None = None

    def env(self) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("API_KEY", "DATABASE_URL", "DATA_DIR", "ENGINE_TYPE", "S3_"))
        }
        env = {
            **keep,
            "DATABASE_URL": self.database.url,
            "REDIS_URL": REDIS_URL,
            "S3_ENDPOINT": self.s3.endpoint,
            "S3_BUCKET": self.bucket,
            "S3_ACCESS_KEY_ID": self.s3.access_key,
            "S3_SECRET_ACCESS_KEY": self.s3.secret_key,
            "S3_REGION": self.s3.region,
            "CLUSTER_SECRET": self.secret,
            "API_KEY": self.api_key,
            "DATA_ROOT": str(self.directory / "data"),
            "OPENWA": f"{sys.executable} -m openwa",
            "ENGINE_TYPE": "mock",
            "MOCK_AUTH_DELAY_MS": "100",
            "MOCK_ACK_DELAY_MS": "50",
            "SESSION_LEASE_S": str(LEASE_S),
            "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
            "RATE_LIMIT_NAMESPACE": self.namespace,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_BACKOFF_BASE_S": "0.05",
            "WEBHOOK_BACKOFF_MAX_S": "0.5",
            "RECONNECT_BASE_S": "0.05",
            "RECONNECT_MAX_S": "0.2",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }
        env.update({name.upper(): value for name, value in GENEROUS_RATE_LIMITS.items()})
        env.update(self.overrides)
        return env

    def add(self, name: str) -> Instance:
        port = free_port()
        instance = Instance(name, port, self.env(), self.directory / f"{name}.log")
        self.instances[name] = instance
        return instance

    def start(self, *names: str) -> None:
        """Launch the named instances together, then wait until each is ready."""
        for name in names:
            self.instances[name].launch()
        for name in names:
            self.instances[name].wait_healthy()

    def live(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.alive()]

    def serving(self) -> list[Instance]:
        """The instances that answer now (started, not stopped or paused)."""
        return [i for i in self.live() if i.serving and i.paused_at is None]

    def client(self, name: str) -> httpx.Client:
        return self.instances[name].client(self.api_key)

    def knows(self, session_id: str, alive: Iterable[str] | None = None) -> str:
        """An instance that can serve this session's routes now: the one it was
        created through, else its owner (which loaded it when it took it over)."""
        names = set(alive if alive is not None else (i.name for i in self.serving()))
        created = self.created_on[session_id]
        if created in names:
            return created
        owner, _ = self.database.leases()[session_id]
        return owner

    def owned_by(self, name: str) -> list[str]:
        return sorted(s for s, (owner, _) in self.database.leases().items() if owner == name)

    def unsettled(self, sessions: Iterable[str], on: Iterable[str]) -> dict[str, str]:
        """What keeps each session from being settled: `ready`, leased to one of `on`,
        its one open connection held by that owner under the lease's epoch."""
        owners = set(on)
        leases, statuses = self.database.leases(), self.database.statuses()
        connections = self.database.open_connections()
        why = {}
        for session_id in sessions:
            lease, status = leases.get(session_id), statuses.get(session_id)
            if lease is None or lease[0] not in owners or status != READY:
                why[session_id] = f"lease {lease}, status {status}"
            elif connections.get(session_id) != [lease]:
                why[session_id] = f"lease {lease}, open connections {connections.get(session_id)}"
        return why

    def settled(self, sessions: Iterable[str], on: Iterable[str]) -> bool:
        return not self.unsettled(sessions, on)

    def wait_settled(
        self, sessions: Iterable[str], on: Iterable[str], timeout: float, what: str
    ) -> float:
        """Seconds until `sessions` settle on `on`; on a timeout, the failure says what
        each was still missing and what the instances last complained of."""
        sessions, on = list(sessions), list(on)
        try:
            return wait_for(lambda: self.settled(sessions, on), timeout, what)[1]
        except AssertionError as exc:
            complaints = {name: i.complaints() for name, i in self.instances.items()}
            raise AssertionError(
                f"{exc}\nunsettled: {self.unsettled(sessions, on)}\ncomplaints: {complaints}"
            ) from None

    def stop_all(self) -> None:
        for instance in self.instances.values():
            if instance.process is None:
                continue
            if instance.paused_at is not None:
                instance.signal(signal.SIGCONT)
            instance.signal(signal.SIGKILL)
            instance.process.wait(10)
            instance.process = None


@dataclass
class Sent:
    """Messages accepted (202) across the scenarios: id -> (from session, to session)."""

    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message_id: str, sender: str, recipient: str) -> None:
        with self.lock:
            self.accepted[message_id] = (sender, recipient)

    def ids(self) -> list[str]:
        with self.lock:
            return list(self.accepted)


def send_text(cluster: Cluster, via: str, sender: str, recipient: str, text: str) -> str | None:
    """Post one text from `sender` to `recipient`'s number through instance `via`: the
    accepted message's id, or None when it was not accepted (an instance down, or one
    that does not know the session yet)."""
    try:
        with cluster.client(via) as http:
            response = http.post(
                f"/api/sessions/{sender}/messages/text",
                json={"chatId": cluster.phones[recipient], "text": text},
            )
    except httpx.TransportError:
        return None
    if response.status_code != 202:
        return None
    message_id: str = response.json()["data"]["id"]
    return message_id


class Recorder:
    """The runtime as ownership sees it: what runs here, what was dropped."""

    def __init__(self, ownership: Ownership, max_sessions: int = 10) -> None:
        self.ownership = ownership
        self.max_sessions = max_sessions
        self.running: set[str] = set()
        self.fenced: list[str] = []
        ownership.attach(self)

    @property
    def running_count(self) -> int:
        return len(self.running)

    def has_room(self) -> bool:
        return len(self.running) < self.max_sessions

    async def take_over(self, session_id: str, reason: str) -> None:
        await self.ownership.acquire(session_id)
        self.running.add(session_id)

    async def fence(self, session_id: str) -> None:
        self.running.discard(session_id)
        self.fenced.append(session_id)


async def wanted_sessions(
    db: async_sessionmaker[AsyncSession], count: int, prefix: str = "cluster"
) -> list[str]:
    """Sessions that should run and that no instance owns yet, written straight to the
    database (for `Ownership` services driven in-process)."""
    now = utcnow()
    ids = [f"ses_{prefix}{i:03d}" for i in range(count)]
    rows = [
        {
            "id": sid,
            "name": sid,
            "engine": "mock",
            "status": "stopped",
            "status_history": [],
            "config": {},
            "should_run": True,
            "created_at": now,
            "updated_at": now,
        }
        for sid in ids
    ]
    async with db() as session, session.begin():
        await session.execute(insert(SessionRow), rows)
    return ids
