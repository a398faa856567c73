"""Who may use the database: one instance alone, or members of a cluster.

Two servers on one database that did not share the work would each run every session,
so each WhatsApp account would be connected twice. An instance started without
CLUSTER_SECRET holds an exclusive lock for its whole life, and any other instance
refuses to start. Clustered instances (docs/deployment.md) hold the same lock shared,
which keeps a lone instance (and `openwa keys rotate-encryption`) off while any runs,
and each also holds a lock of its own id: the others read that lock to know it lives
(its connection, and the lock with it, ends the moment its process dies).

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
from typing import Any, Protocol

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from openwa.db.dead_peer import bound_sockets
from openwa.db.engine import is_sqlite, sqlite_path
from openwa.kit.private_files import PRIVATE_FILE_MODE, private_dir

log = structlog.get_logger(__name__)

LOCK_NAME = "openwa-instance"
MEMBER_PREFIX = "openwa-member:"
# How often the PostgreSQL lock's connection is used, so that idle timeouts of firewalls
# and poolers in between do not close it (and so that a lost connection is noticed).
KEEPALIVE_S = 30.0
# How long one statement or connect of the lock's connection may wait for the server.
_LOCK_WAIT_S = 10.0


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class InstanceLocked(Exception):
    """Another instance holds the database: this one must not start."""

    def __init__(self, database: str, message: str | None = None) -> None:
        self.database = database
        super().__init__(
            message
            or f"another OpenWA instance is using the database {database}; several "
            "instances on one database need CLUSTER_SECRET on each (docs/deployment.md)"
        )


class InstanceLock(Protocol):
    """What the app holds while it runs. Multi-instance work replaces it with membership."""

    async def acquire(self) -> None:
        """Take the lock or raise `InstanceLocked` at once (never waits for the holder)."""

    async def release(self) -> None:
        """Give the lock up; safe to call when it is not held."""

    async def held(self) -> bool:
        """Whether this instance holds the lock now (taken again if its connection was
        lost and nobody else took it meanwhile): False when another holds it. Raises
        when that cannot be told now (the database out of reach)."""


class NoLock:
    """For an in-memory SQLite database: nothing else can open it."""

    async def acquire(self) -> None:
        return None

    async def held(self) -> bool:
        return True

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

    async def held(self) -> bool:
        return self._fd is not None  # a flock ends only with its descriptor

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The file stays: deleting it would let a starter lock a new inode while an
            # older one still holds the unlinked file.
            os.close(fd)


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a dedicated, kept-alive connection."""

    def __init__(
        self,
        url: str,
        database: str,
        key: int,
        keepalive_s: float | None = KEEPALIVE_S,
        *,
        shared: bool = False,
        refused: str | None = None,
    ):
        self.url = url
        self.database = database
        self.key = key
        self.keepalive_s = keepalive_s
        self.shared = shared
        self.refused = refused  # what InstanceLocked says when another holds it
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._checking = asyncio.Lock()

    async def acquire(self) -> None:
        if self._conn is not None:
            return
        await self._take()
        if self.keepalive_s is not None:  # None: its owner calls `check` often itself
            self._keepalive = asyncio.create_task(
                self._keep_alive(), name="instance-lock-keepalive"
            )

    async def _take(self) -> None:
        # Bounded: a server gone silent would otherwise hold the keep-alive, and the
        # release at shutdown, until the kernel gives up (many minutes). Its statements
        # are tiny, so unlike the app's connections (`db.engine.create_engine`) they get
        # a statement bound too, besides the socket's.
        engine = create_async_engine(
            self.url,
            poolclass=NullPool,
            connect_args={"command_timeout": _LOCK_WAIT_S, "timeout": _LOCK_WAIT_S},
            hide_parameters=True,
        )
        bound_sockets(engine, 3 * _LOCK_WAIT_S)
        try:
            conn = await engine.connect()
            try:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                how = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
                taken = await conn.scalar(text(f"SELECT {how}(:k)"), {"k": self.key})
            except BaseException:
                await conn.close()
                raise
        except BaseException:
            await engine.dispose()
            raise
        if not taken:
            await conn.close()
            await engine.dispose()
            raise InstanceLocked(self.database, self.refused)
        self._engine, self._conn = engine, conn

    async def _drop(self) -> None:
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if engine is not None:
            await engine.dispose()

    async def check(self) -> bool:
        """Use the connection once; if it is gone (and the lock with it), take it again.
        Whether the lock was held all along (False: it was lost, and is held again).

        A lock lost this way cannot be kept from another instance that starts meanwhile;
        if one did, this is logged as an error (the two now run the same sessions).
        """
        # One check at a time (the keep-alive and `held` may meet): two would each take
        # the lock again, and the one that lost would say another instance has it.
        async with self._checking:
            return await self._check()

    async def _check(self) -> bool:
        if self._conn is not None:
            try:
                await self._conn.scalar(text("SELECT 1"))
                return True
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
        return False

    async def held(self) -> bool:
        try:
            await self.check()
        except InstanceLocked:
            return False
        return True

    async def _keep_alive(self) -> None:
        assert self.keepalive_s is not None
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
                how = "pg_advisory_unlock_shared" if self.shared else "pg_advisory_unlock"
                await self._conn.scalar(text(f"SELECT {how}(:k)"), {"k": self.key})
        await self._drop()


def describe(url: str) -> str:
    """The database as an operator would name it: a file path, or the URL without password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def instance_lock(url: str, name: str = LOCK_NAME, *, shared: bool = False) -> InstanceLock:
    """The lock that keeps a second instance off the database at `url` (`shared`: the
    one cluster members hold together, PostgreSQL only)."""
    if is_sqlite(url):
        assert not shared, "a cluster needs PostgreSQL (checked by Settings)"
        path = sqlite_path(url)
        if path is None:
            return NoLock()
        return FileLock(path.with_name(path.name + ".lock"), describe(url))
    refused = None
    if shared:
        refused = (
            f"an OpenWA instance without CLUSTER_SECRET is using the database {describe(url)}; "
            "stop it, or set the same CLUSTER_SECRET on every instance"
        )
    return AdvisoryLock(url, describe(url), advisory_key(name), shared=shared, refused=refused)


def member_key(instance_id: str) -> int:
    return advisory_key(MEMBER_PREFIX + instance_id)


def member_lock(url: str, instance_id: str) -> AdvisoryLock:
    """Held by a cluster member for its life: proof to the others that it lives, and a
    refusal for a second process started with the same INSTANCE_ID."""
    return AdvisoryLock(
        url,
        describe(url),
        member_key(instance_id),
        None,  # the ownership loop checks it every second
        refused=f"another OpenWA instance runs with INSTANCE_ID {instance_id}",
    )


async def live_member_keys(conn: AsyncConnection | Any) -> set[int]:
    """The member locks held now. PostgreSQL shows a one-bigint advisory lock as its
    high and low 32 bits (`classid`, `objid`, with `objsubid` 1)."""
    rows = await conn.execute(
        text(
            "SELECT classid::bigint, objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    keys = set()
    for high, low in rows.all():
        key = (int(high) << 32) | int(low)
        keys.add(key - 2**64 if key >= 2**63 else key)
    return keys
