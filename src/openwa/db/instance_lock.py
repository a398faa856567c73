"""One OpenWA instance per database, until several instances are supported.

Two servers on one database would each restore and run every session, so each WhatsApp
account would be connected twice. Until instances share the work (session leases and
membership, which will replace this module), the app holds a lock for its whole life and
a second instance refuses to start.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its
own, opened from the database URL outside the app's pool: pool recycling or pre-ping
cannot drop it. It runs in autocommit, so it never sits idle in a transaction. The server
drops the lock with the connection, so a killed instance frees it.

SQLite: an exclusive non-blocking `flock` on `<database file>.lock`, held by an open file
descriptor. The kernel drops it when the process dies, however it dies. An in-memory
database belongs to one process and needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from openwa.db.engine import is_sqlite, sqlite_path
from openwa.kit.private_files import PRIVATE_FILE_MODE, private_dir

log = structlog.get_logger(__name__)

LOCK_NAME = "openwa-instance"
# How often the PostgreSQL lock's connection is used, so that idle timeouts of firewalls
# and poolers in between do not close it (and so that a lost connection is noticed).
KEEPALIVE_S = 30.0


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class InstanceLocked(Exception):
    """Another instance holds the database: this one must not start."""

    def __init__(self, database: str) -> None:
        self.database = database
        super().__init__(
            f"another OpenWA instance is using the database {database}; "
            "several instances on one database are not supported yet"
        )


class InstanceLock(Protocol):
    """What the app holds while it runs. Multi-instance work replaces it with membership."""

    async def acquire(self) -> None:
        """Take the lock or raise `InstanceLocked` at once (never waits for the holder)."""

    async def release(self) -> None:
        """Give the lock up; safe to call when it is not held."""


class NoLock:
    """For an in-memory SQLite database: nothing else can open it."""

    async def acquire(self) -> None:
        return None

    async def release(self) -> None:
        return None


class FileLock:
    """An exclusive `flock` on a file beside the SQLite database."""

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self.database = database
        self._fd: int | None = None

    async def acquire(self) -> None:
        if self._fd is not None:
            return
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLocked(self.database) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The file stays: deleting it would let a starter lock a new inode while an
            # older one still holds the unlinked file.
            os.close(fd)


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a dedicated, kept-alive connection."""

    def __init__(self, url: str, database: str, key: int, keepalive_s: float = KEEPALIVE_S):
        self.url = url
        self.database = database
        self.key = key
        self.keepalive_s = keepalive_s
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if self._conn is not None:
            return
        await self._take()
        self._keepalive = asyncio.create_task(self._keep_alive(), name="instance-lock-keepalive")

    async def _take(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            conn = await engine.connect()
            try:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                taken = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            except BaseException:
                await conn.close()
                raise
        except BaseException:
            await engine.dispose()
            raise
        if not taken:
            await conn.close()
            await engine.dispose()
            raise InstanceLocked(self.database)
        self._engine, self._conn = engine, conn

    async def _drop(self) -> None:
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if engine is not None:
            await engine.dispose()

    async def check(self) -> None:
        """Use the connection once; if it is gone (and the lock with it), take it again.

        A lock lost this way cannot be kept from another instance that starts meanwhile;
        if one did, this is logged as an error (the two now run the same sessions).
        """
        if self._conn is not None:
            try:
                await self._conn.scalar(text("SELECT 1"))
                return
            except Exception as exc:
                log.warning("instance_lock_connection_lost", error=str(exc))
        await self._drop()
        try:
            await self._take()
        except InstanceLocked:
            log.error("instance_lock_lost", database=self.database)
            raise
        except Exception as exc:
            log.warning("instance_lock_retake_failed", error=str(exc))
            raise
        log.info("instance_lock_retaken")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            with contextlib.suppress(Exception):
                await self.check()

    async def release(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        await self._drop()


def describe(url: str) -> str:
    """The database as an operator would name it: a file path, or the URL without password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def instance_lock(url: str, name: str = LOCK_NAME) -> InstanceLock:
    """The lock that keeps a second instance off the database at `url`."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is None:
            return NoLock()
        return FileLock(path.with_name(path.name + ".lock"), describe(url))
    return AdvisoryLock(url, describe(url), advisory_key(name))
