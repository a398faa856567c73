"""A SQLite connection closed with a cursor still alive lets go of its write lock.

A task cancelled mid-query keeps its half-read cursor; the pool then closes the
connection. With `sqlite3.Connection` the connection stays a zombie holding its
transaction, and the next writer (a shutdown's release of claims) fails with
"database is locked" after the busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from openwa.db.engine import ClosingConnection, create_engine


def _filled(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])


def _writer_gets_lock(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


@pytest.mark.parametrize("factory", [sqlite3.Connection, ClosingConnection])
def test_close_with_a_live_cursor_releases_the_write_lock(
    factory: type[sqlite3.Connection], tmp_path: Path
) -> None:
    path = tmp_path / "x.db"
    _filled(path)
    db = sqlite3.connect(path, factory=factory, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t VALUES (-1)")
    cursor = db.cursor()
    cursor.execute("SELECT x FROM t")
    cursor.fetchone()  # half read, as a cancelled task leaves it
    db.close()
    # The plain connection is the failure this class exists for.
    assert _writer_gets_lock(path) is (factory is ClosingConnection)
    del cursor


async def test_the_engine_closes_its_connections_that_way(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _filled(path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection._conn, ClosingConnection)  # type: ignore[union-attr]
        await conn.execute(text("SELECT count(*) FROM t"))
    await engine.dispose()
    assert await asyncio.to_thread(_writer_gets_lock, path)
