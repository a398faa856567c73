"""Schema upgrades under a lock, so instances started together never race.

PostgreSQL: a session-level advisory lock on the migrating connection. SQLite: an
exclusive `flock` on a file beside the database (SQLite is single-machine anyway).
Whatever must happen exactly once after the upgrade (the first admin key) runs as
`after`, inside the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from openwa.db.engine import is_sqlite, sqlite_path
from openwa.kit.private_files import touch_private

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# An arbitrary 64-bit constant naming OpenWA's migration lock among advisory locks.
_PG_LOCK_KEY = 0x0E2A_5E55_0001


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    touch_private(path)
    with path.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def migration_lock(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    url = engine.url.render_as_string(hide_password=False)
    if is_sqlite(url):
        db_file = sqlite_path(url)
        lock = _file_lock(db_file.with_suffix(".migrate.lock")) if db_file else _null_lock()
        async with lock, engine.connect() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        await conn.commit()
        try:
            yield conn
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            await conn.commit()


@contextlib.asynccontextmanager
async def _null_lock() -> AsyncIterator[None]:
    yield


def _own_engine(engine: AsyncEngine) -> AsyncEngine:
    """A connection of its own for migrating, outside the app's (small) pool."""
    url = engine.url.render_as_string(hide_password=False)
    return create_async_engine(url, poolclass=NullPool, hide_parameters=True)


async def upgrade(
    engine: AsyncEngine,
    revision: str = "head",
    after: Callable[[], Awaitable[None]] | None = None,
) -> None:
    migrating = _own_engine(engine)
    try:
        async with migration_lock(migrating) as conn:
            await conn.run_sync(_upgrade, revision)
            await conn.commit()
            if after is not None:
                await after()
    finally:
        await migrating.dispose()


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    migrating = _own_engine(engine)
    try:
        async with migration_lock(migrating) as conn:
            await conn.run_sync(_downgrade, revision)
            await conn.commit()
    finally:
        await migrating.dispose()
