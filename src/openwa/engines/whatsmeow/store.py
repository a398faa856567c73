"""Where whatsmeow keeps its devices (keys, sessions, contacts), as the composition root
says: on PostgreSQL, in the same database, in whatsmeow's own `whatsmeow_*` tables (our
migrations never touch them), so a session can move between instances; on SQLite, in a
file per session under `DATA_DIR/whatsmeow/`.

Our own `engine_auth` row for the session keeps only the device's JID, which tells
whatsmeow which of the devices in a shared database to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from openwa.kit.private_files import private_dir

log = structlog.get_logger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def whatsmeow_dsn(database_url: str) -> str | None:
    """whatsmeow's (lib/pq) address for our PostgreSQL URL; None for SQLite.

    lib/pq asks for TLS unless told otherwise, so a URL without `sslmode` gets
    `sslmode=disable`, as asyncpg would try plain first on a local server.
    """
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        return None
    query = dict(parse_qsl(parts.query))
    if "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    query.setdefault("sslmode", "disable")
    return urlunsplit(("postgres", parts.netloc, parts.path, urlencode(query), ""))


@dataclass(frozen=True)
class DeviceStore:
    """`dsn` for PostgreSQL, else one SQLite file per session in `directory`."""

    directory: Path
    dsn: str | None = None

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
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            if not await conn.fetchval("SELECT to_regclass('whatsmeow_device') IS NOT NULL"):
                return False
            found = await conn.fetchval("SELECT 1 FROM whatsmeow_device WHERE jid = $1", jid)
            return found is not None
        finally:
            await conn.close()

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
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            exists = await conn.fetchval("SELECT to_regclass('whatsmeow_device') IS NOT NULL")
            if exists:
                await conn.execute("DELETE FROM whatsmeow_device WHERE jid = $1", jid)
        finally:
            await conn.close()


def _sqlite_has_device(path: Path, jid: str) -> bool:
    """Whether the file holds the device. Opened for writing, though only read: a write
    of whatsmeow's cut short (the worker killed mid-transaction) leaves a hot journal
    that only a connection that may write rolls back; read-only, the open failed, the
    device was taken for missing, and the file was deleted with it (a new scan). Only a
    file without whatsmeow's tables is "no device"; any other error is raised, and the
    connect is tried again later."""
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)) as db:
        tables = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'whatsmeow_device'"
        ).fetchone()
        if tables is None:  # whatsmeow never stored a device here
            return False
        row = db.execute("SELECT 1 FROM whatsmeow_device WHERE jid = ?", (jid,)).fetchone()
    return row is not None
