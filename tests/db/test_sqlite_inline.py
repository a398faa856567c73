"""The SQLite writer runs its statements on the event loop's thread, and what could make
one wait (another connection's write lock, a checkpoint, a statement over many rows)
runs on aiosqlite's thread instead, so the loop goes on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openwa.db import sqlite_driver
from openwa.db.engine import create_engine, create_reader
from openwa.db.sqlite_driver import off_the_loop


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with engine.begin() as db:
        await db.execute(text("CREATE TABLE t (x INTEGER, pad TEXT)"))
    yield engine
    await engine.dispose()


async def _thread_on(db: AsyncConnection) -> int:
    """The id of the thread that runs the connection's statements, asked of SQLite."""
    raw = await db.get_raw_connection()
    raw.driver_connection._conn.create_function("tid", 0, threading.get_ident)  # type: ignore[union-attr]
    return int((await db.execute(text("SELECT tid()"))).scalar_one())


async def _thread_of(engine: AsyncEngine) -> int:
    """The same for the engine's connection: a write first, so that the WAL of a
    connection just opened has started over (the first write goes to the thread)."""
    async with engine.begin() as db:
        await db.execute(text("INSERT INTO t (x) VALUES (0)"))
    async with engine.connect() as db:
        return await _thread_on(db)


async def test_the_writer_runs_on_the_loop_and_off_it_when_asked(
    writer: AsyncEngine, tmp_path: Path
) -> None:
    loop_thread = threading.get_ident()
    assert await _thread_of(writer) == loop_thread
    with off_the_loop():
        assert await _thread_of(writer) != loop_thread
    reader = create_reader(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", writer)
    try:
        async with reader.connect() as db:
            assert await _thread_on(db) != loop_thread  # readers may scan: on the thread
    finally:
        await reader.dispose()


async def test_a_locked_database_is_waited_for_off_the_loop(
    writer: AsyncEngine, tmp_path: Path
) -> None:
    async with writer.connect() as db:  # the pooled connection exists before the lock
        await db.execute(text("SELECT 1"))
    other = sqlite3.connect(tmp_path / "x.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with writer.begin() as db:
            await db.execute(text("INSERT INTO t (x) VALUES (1)"))

    waiting = asyncio.ensure_future(write())
    # The loop goes on while the write waits for the lock: a wait on the loop would
    # hold the timer below until the busy timeout (10 s) had failed the write.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), timeout=0.3)
    other.execute("ROLLBACK")
    other.close()
    await waiting
    async with writer.connect() as db:
        assert (await db.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
        # The wait was the thread's alone: inline, a locked database answers at once.
        assert (await db.execute(text("PRAGMA busy_timeout"))).scalar_one() == 0


async def test_the_writer_checkpoints_its_wal_off_the_loop(
    writer: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its automatic checkpoint is off (it would copy pages and fsync on the loop); the
    driver's own puts the WAL into the database file."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_S", 0.0)
    threads: list[int] = []
    checkpoint = sqlite_driver._checkpoint

    def on_thread(connection: sqlite3.Connection) -> bool | None:
        threads.append(threading.get_ident())
        return checkpoint(connection)

    monkeypatch.setattr(sqlite_driver, "_checkpoint", on_thread)
    database = tmp_path / "x.db"
    before = database.stat().st_size
    for _ in range(20):
        async with writer.begin() as db:
            await db.execute(
                text("INSERT INTO t (x, pad) VALUES (:x, :pad)"),
                [{"x": i, "pad": "p" * 1000} for i in range(50)],
            )
    async with writer.connect() as db:
        assert (await db.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one() == 0
    for _ in range(500):  # a commit starts a checkpoint unless one is still running
        if database.stat().st_size > before + 1_000_000:
            break
        async with writer.begin() as db:
            await db.execute(text("SELECT 1"))
        await asyncio.sleep(0.01)
    assert database.stat().st_size > before + 1_000_000
    assert threads
    assert threading.get_ident() not in threads


async def test_after_a_whole_checkpoint_the_next_write_starts_the_wal_off_the_loop(
    writer: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint that copied the whole WAL makes the next write start it over, and
    that syncs the WAL's header: the connection works on the thread until a commit has
    written something (a commit that wrote nothing, or a rolled-back write, leaves it
    there)."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_S", 0.0)
    loop_thread = threading.get_ident()
    async with writer.connect() as db:
        adapted = (await db.get_raw_connection()).dbapi_connection
        assert isinstance(adapted, sqlite_driver.OneTripConnection)
        await db.execute(text("INSERT INTO t (x) VALUES (1)"))
        await db.commit()
        for _ in range(500):  # the checkpoint that commit started
            if adapted._checkpointing is None:
                break
            await asyncio.sleep(0.01)
        monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_S", 3600.0)
        assert await _thread_on(db) != loop_thread
        await db.commit()  # wrote nothing: the WAL has not started over yet
        assert await _thread_on(db) != loop_thread
        await db.execute(text("INSERT INTO t (x) VALUES (3)"))
        await db.rollback()  # undone: SQLite still counts the change, nothing was written
        await db.execute(text("SELECT 1"))
        await db.commit()
        assert await _thread_on(db) != loop_thread
        await db.execute(text("INSERT INTO t (x) VALUES (2)"))
        await db.commit()
        assert await _thread_on(db) == loop_thread
