"""Where whatsmeow keeps its devices (keys, sessions, contacts), as the composition root
says: on PostgreSQL, in the same database, in whatsmeow's own `whatsmeow_*` tables (our
migrations never touch them), so a session can move between instances; on SQLite, in a
file per session under `DATA_DIR/whatsmeow/`.

Our own `engine_auth` row for the session keeps only the device's JID, which tells
whatsmeow which of the devices in a shared database to resume (and, on PostgreSQL,
while the session is unlinked, the noise key its QR code showed: `pairing.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.engines.whatsmeow.pairing import device_with_noise_key
from openwa.kit.private_files import private_dir

log = structlog.get_logger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# whatsmeow makes its tables when its first client starts.
_HAS_DEVICE_TABLE = text("SELECT to_regclass('whatsmeow_device') IS NOT NULL")


# What lib/pq (whatsmeow's driver) reads from an address. It sends any other option to
# the server as a setting, and the server refuses a connection over one it has no setting
# for: `prepared_statement_cache_size=0` (the usual option behind PgBouncer) or
# `command_timeout` in DATABASE_URL made every whatsmeow session fail to start. What
# DATABASE_URL may hold is what SQLAlchemy's asyncpg dialect and `asyncpg.connect` take;
# the options of theirs lib/pq has no use for are left out (and logged).
_LIB_PQ_OPTIONS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "passfile",
        "service",
        "sslmode",
        "sslnegotiation",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslsni",
        "connect_timeout",
        "target_session_attrs",
        "krbsrvname",
        "krbspn",
    }
)


def whatsmeow_dsn(database_url: str, connect_timeout_s: float = 10) -> str | None:
    """whatsmeow's (lib/pq) address for our PostgreSQL URL; None for SQLite.

    `ssl` (asyncpg's name) becomes `sslmode`, `direct_tls` `sslnegotiation=direct` and
    `timeout` (asyncpg's connect bound) `connect_timeout`; without `ssl`, lib/pq is told
    `sslmode=prefer`, asyncpg's default (lib/pq's own, `require`, would refuse a server
    without TLS that our side reaches). lib/pq waits for a connect without end unless
    given `connect_timeout` (whole seconds), so it gets DATABASE_CONNECT_TIMEOUT_S. Only
    lib/pq reads this address: our own queries on whatsmeow's tables go through our
    engine (`DeviceStore.database`).
    """
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        return None
    given = parse_qsl(parts.query)
    query: list[tuple[str, str]] = []
    left_out: list[str] = []
    timeout = _whole_seconds(connect_timeout_s)
    for name, value in given:
        if name == "ssl":
            name = "sslmode"
        elif name == "direct_tls":
            if value.lower() not in ("true", "1", "yes", "on"):
                continue
            name, value = "sslnegotiation", "direct"
        elif name == "timeout":
            name, value = "connect_timeout", _whole_seconds(value)
        if name in _LIB_PQ_OPTIONS:
            query.append((name, value))
        else:
            left_out.append(name)
    if left_out:
        log.info("whatsmeow_dsn_options_left_out", options=sorted(set(left_out)))
    names = {name for name, _ in query}
    if "sslmode" not in names:
        query.append(("sslmode", "prefer"))
    if "connect_timeout" not in names:
        query.append(("connect_timeout", timeout))
    return urlunsplit(("postgres", parts.netloc, parts.path, urlencode(query), ""))


def _whole_seconds(seconds: float | str) -> str:
    """lib/pq's `connect_timeout`: whole seconds, at least one (0 would mean none)."""
    try:
        return str(max(1, math.ceil(float(seconds))))
    except (ValueError, OverflowError):
        return "10"  # not a number: SQLAlchemy refuses it too, before lib/pq sees it


@dataclass(frozen=True)
class DeviceStore:
    """`dsn` (lib/pq's address) and `database` (our engine on the same database, for our
    own queries on whatsmeow's tables) for PostgreSQL, else one SQLite file per session
    in `directory`."""

    directory: Path
    dsn: str | None = None
    database: AsyncEngine | None = None

    @property
    def kind(self) -> str:
        return "postgres" if self.dsn else "sqlite"

    def _file(self, session_id: str) -> Path:
        if not _SAFE_NAME.match(session_id):
            raise ValueError(f"unsafe session id {session_id!r}")
        return self.directory / f"{session_id}.db"

    def location(self, session_id: str) -> str:
        """What neonize's `NewClient(name=...)` gets for this session."""
        if self.dsn:
            return self.dsn
        private_dir(self.directory)
        return str(self._file(session_id))

    async def has_device(self, session_id: str, jid: str) -> bool:
        """Whether whatsmeow still holds the device `jid` (neonize's Go side crashes on
        resuming a device that is not there)."""
        if self.dsn is None:
            path = self._file(session_id)
            return await asyncio.to_thread(_sqlite_has_device, path, jid)
        async with self._postgres().connect() as conn:
            if not await conn.scalar(_HAS_DEVICE_TABLE):
                return False
            found = await conn.scalar(
                text("SELECT 1 FROM whatsmeow_device WHERE jid = :jid"), {"jid": jid}
            )
            return found is not None

    async def unrecorded_device(self, session_id: str, noise_key: bytes | None) -> str | None:
        """The JID of a device whatsmeow stored for the session that our auth row does
        not name: the one device of the session's own file (SQLite), or, in the store
        every session shares (PostgreSQL), the device whose public noise key is the one
        the session's last QR code showed (`pairing.py`)."""
        if self.dsn is None:
            return await asyncio.to_thread(_sqlite_sole_device, self._file(session_id))
        if noise_key is None:
            return None
        async with self._postgres().connect() as conn:
            if not await conn.scalar(_HAS_DEVICE_TABLE):
                return None
            result = await conn.execute(text("SELECT jid, noise_key FROM whatsmeow_device"))
            devices = [(str(jid), bytes(key)) for jid, key in result]
        # About 55 µs a device: off the event loop (half a second for 10,000).
        return await asyncio.to_thread(device_with_noise_key, devices, noise_key)

    async def remove(self, session_id: str, jid: str | None) -> None:
        """Forget the session's device: its file, or its rows (whatsmeow's foreign keys
        cascade from `whatsmeow_device` to every other table)."""
        if self.dsn is None:
            path = self._file(session_id)
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(Path(f"{path}{suffix}").unlink)
            return
        if jid is None:
            return
        async with self._postgres().begin() as conn:
            if await conn.scalar(_HAS_DEVICE_TABLE):
                await conn.execute(
                    text("DELETE FROM whatsmeow_device WHERE jid = :jid"), {"jid": jid}
                )

    def _postgres(self) -> AsyncEngine:
        if self.database is None:
            raise RuntimeError("a PostgreSQL device store needs the engine of its database")
        return self.database


def _sqlite_sole_device(path: Path) -> str | None:
    """The file's device, if it has exactly one."""
    jids = _sqlite_devices(path, None, 2)
    return jids[0] if len(jids) == 1 else None


def _sqlite_has_device(path: Path, jid: str) -> bool:
    """Whether the file holds the device."""
    return bool(_sqlite_devices(path, jid, 1))


def _sqlite_devices(path: Path, jid: str | None, limit: int) -> list[str]:
    """Up to `limit` JIDs of the file's devices (only `jid`, when given). Opened for
    writing, though only read: a write of whatsmeow's cut short (the worker killed
    mid-transaction) leaves a hot journal that only a connection that may write rolls
    back; read-only, the open failed, the device was taken for missing, and the file was
    deleted with it (a new scan). Only a missing file, or one without whatsmeow's tables,
    holds no device; any other error is raised, and the connect is tried again later."""
    if not path.exists():
        return []
    with contextlib.closing(
        sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=10)
    ) as db:
        tables = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'whatsmeow_device'"
        ).fetchone()
        if tables is None:  # whatsmeow never stored a device here
            return []
        query = "SELECT jid FROM whatsmeow_device"
        query += " WHERE jid = ? LIMIT ?" if jid is not None else " LIMIT ?"
        rows = db.execute(query, (jid, limit) if jid is not None else (limit,)).fetchall()
    return [str(row[0]) for row in rows]
