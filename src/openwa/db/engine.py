"""Async database engines and session factories for SQLite and PostgreSQL.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` on every transaction of the
writer: with a deferred BEGIN, read-then-write transactions fail with "database is
locked" under concurrency, and writers serialise on the file anyway. Reads that need
no write go through a reader engine beside it (deferred BEGIN, `query_only`, a few
connections): WAL lets them run while the one writer writes, so a read never queues
for the write lock. On PostgreSQL the reader is the writer's own pool.

Every session is a `UnitOfWorkSession`: work that must happen only once a transaction
has committed (waking the workers that wait for new events, queued sends, deliveries;
refreshing in-memory copies) is registered with `on_commit` and runs from one hook.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Table, event, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from openwa.db.commits import note_commit
from openwa.db.dead_peer import bound_sockets
from openwa.db.sqlite_driver import BUSY_WAIT_MS, off_the_loop, one_trip_dbapi
from openwa.kit import wire_json
from openwa.kit.private_files import touch_private
from openwa.kit.redact import redact_text
from openwa.kit.wire_json import well_formed


def _json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        pass
    # A lone surrogate (half an emoji in an engine's text) is kept as U+FFFD: stored as
    # it came, every API answer that showed it failed to render (and with it a whole
    # page of messages or events).
    value = well_formed(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # What orjson refuses and the standard library writes: an integer beyond 64
        # bits, very deep nesting.
        return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    # What the standard library wrote (before orjson, or by the fallback above) is read
    # by it too; rows written earlier may hold lone surrogates, made well-formed here.
    return wire_json.loads(text)


# JSON columns (message content, event data, audit fields) through orjson: the standard
# library's encoder was 2 % of the server's time end to end. Keys that are not strings
# become strings, as the standard library makes them; what orjson cannot take goes
# through the standard library, so every value stored before still reads.
# Every engine of ours: JSON through orjson, and a failed statement's error without its
# parameters. SQLAlchemy puts them in the error's text, which is logged (`unhandled_error`,
# `database_unavailable`, a worker's traceback): a webhook's secret and its headers'
# bearer tokens, an engine's auth state, a message's text.
_ENGINE_OPTIONS: dict[str, Any] = {
    "json_serializer": _json_dumps,
    "json_deserializer": _json_loads,
    "hide_parameters": True,
}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(db: AsyncSession) -> bool:
    """Whether `db` talks to PostgreSQL (row locks, `SKIP LOCKED`); SQLite serialises
    writers instead."""
    return db.get_bind().dialect.name == "postgresql"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for memory databases and other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


_AFTER_COMMIT = "openwa.after_commit"


class UnitOfWorkSession(Session):
    """The sync session behind every `AsyncSession` here; carries the after-commit hook."""


# Set when a transaction writes (a flush, or an INSERT, UPDATE or DELETE statement): its
# commit then counts as one of the request's (db/commits.py); a read-only one does not.
_WROTE = "openwa.wrote"


@event.listens_for(UnitOfWorkSession, "do_orm_execute")
def _note_write(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(UnitOfWorkSession, "after_flush")
def _note_flush(session: Session, _context: UOWTransaction) -> None:
    session.info[_WROTE] = True


@event.listens_for(UnitOfWorkSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        note_commit()
    for callback in session.info.pop(_AFTER_COMMIT, {}).values():
        callback()


@event.listens_for(UnitOfWorkSession, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
    session.info.pop(_WROTE, None)


_STAGED = "openwa.staged_rows"


@event.listens_for(UnitOfWorkSession, "after_transaction_end")
def _drop_staged(session: Session, transaction: SessionTransaction) -> None:
    # Whatever ended the transaction (a rollback, a close), its staged rows end with it.
    if transaction.parent is None:
        session.info.pop(_STAGED, None)


def stage_insert(db: AsyncSession | Session, table: Table, values: dict[str, Any]) -> None:
    """Insert `values` (column names) into `table` when the current transaction commits.

    The rows a transaction stages are written just before it commits (and before the
    ORM's own flush), one executemany per table: the many small units of a group commit
    then cost one statement per table, without an ORM object each (the ORM's flush of
    them was the larger part of an accepted send's database time). A staged row is not
    seen by reads in its own transaction, so stage only rows it does not read back; a
    row that fails to insert fails the commit, as a flushed one would. Nor may a staged
    row reference a row added through the ORM in the same transaction (that one is
    flushed after it). Rows are written at the outermost commit, not at a savepoint's.
    """
    sync = db.sync_session if isinstance(db, AsyncSession) else db
    sync.info.setdefault(_STAGED, {}).setdefault(table, []).append(values)


@event.listens_for(UnitOfWorkSession, "before_commit")
def _insert_staged(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the rows wait for the outer commit
    staged: dict[Table, list[dict[str, Any]]] | None = session.info.pop(_STAGED, None)
    if not staged:
        return
    order = {t: i for i, t in enumerate(next(iter(staged)).metadata.sorted_tables)}
    for table in sorted(staged, key=lambda t: order.get(t, len(order))):
        # One executemany per set of columns (rows staged by different code may differ).
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in staged[table]:
            shapes.setdefault(tuple(values), []).append(values)
        for rows in shapes.values():
            session.execute(insert(table), rows)


Callback = TypeVar("Callback", bound=Callable[[], None])


def on_commit(db: AsyncSession | Session, callback: Callback, key: Hashable = None) -> Callback:
    """Run `callback` once the current transaction of `db` commits (never on rollback).

    Registered again under the same key (the callback itself by default) in the same
    transaction, it runs once: the callback first registered is kept and returned, so
    a caller can accumulate state on it.
    """
    sync = db.sync_session if isinstance(db, AsyncSession) else db
    callbacks = sync.info.setdefault(_AFTER_COMMIT, {})
    registered: Callback = callbacks.setdefault(callback if key is None else key, callback)
    return registered


class ClosingConnection(sqlite3.Connection):
    """A SQLite connection that lets go of its locks when closed.

    `sqlite3.Connection.close()` with a cursor still alive (one whose task was cancelled
    mid-query keeps a half-read statement) leaves the connection a zombie that holds its
    transaction and its write lock until the cursor is collected: the next writer then
    fails with "database is locked". Closing every cursor and rolling back first ends
    the transaction with the connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()

    def cursor(self, factory: Any = sqlite3.Cursor) -> Any:
        cursor = super().cursor(factory)
        self._cursors.add(cursor)
        return cursor

    def close(self) -> None:
        for cursor in list(self._cursors):
            with contextlib.suppress(sqlite3.Error):
                cursor.close()
        with contextlib.suppress(sqlite3.Error):
            if self.in_transaction:
                self.rollback()
        super().close()


# The size the writer cuts SQLite's -wal file back to (`PRAGMA journal_size_limit`).
WAL_SIZE_LIMIT = 64 * 1024 * 1024


# Not bound to the thread that opened it: the writer's statements run on the event loop
# (db/sqlite_driver.py), aiosqlite opens it on its own thread.
_SQLITE_CONNECT_ARGS = {"factory": ClosingConnection, "check_same_thread": False}


def _configure_sqlite(engine: AsyncEngine, *, reader: bool = False) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        pragmas = ["PRAGMA foreign_keys=ON"]
        if reader:
            pragmas += [f"PRAGMA busy_timeout={BUSY_WAIT_MS}", "PRAGMA query_only=ON"]
        else:
            # The writer's busy timeout and checkpoints are its driver's (inline).
            # SQLite never shrinks the -wal file by itself: it grows to the longest run
            # of writes between two checkpoints (one large transaction, a reader holding
            # an old snapshot) and stays that size for good (88 MB after a session
            # delete's single transaction, measured). With a limit, the writer cuts it
            # back to that size when it starts the WAL over after a full checkpoint;
            # the usual WAL between checkpoints (a second's writes) stays far below it.
            pragmas[:0] = [
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=NORMAL",
                f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}",
            ]
        with off_the_loop():  # a new file's change to WAL syncs it several times
            for pragma in pragmas:
                cursor.execute(pragma)
        cursor.close()

    begin = "BEGIN" if reader else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def create_engine(
    url: str,
    *,
    idle_in_transaction_s: float | None = None,
    command_timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
    tcp_timeout_s: float | None = None,
) -> AsyncEngine:
    """The app's engine. `idle_in_transaction_s` (PostgreSQL): the server ends a
    connection left that long inside a transaction, and its locks with it; a cluster
    sets it to the session lease, so that a paused instance (SIGSTOP, a frozen VM) that
    stopped mid-transaction holds no row the others need to take its sessions over.

    PostgreSQL, on this side: `tcp_timeout_s` ends a connection whose host went silent
    (`db/dead_peer.py`); `connect_timeout_s` bounds a connect; `command_timeout_s`
    (off unless set) bounds every statement, slow ones too, which also covers a server
    whose host answers but whose database hangs. A statement past it is cancelled
    (asyncpg asks the server on a new connection); when its own connection does not
    answer that either, asyncpg closes it after as long again, and the pool drops it."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            touch_private(path)
        # One connection: SQLite has one writer at a time anyway, and queueing for the
        # pool (a wake-up) is far faster than SQLite's busy handler (sleep and retry).
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args=_SQLITE_CONNECT_ARGS,
            module=one_trip_dbapi(inline=True),
            **_ENGINE_OPTIONS,
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if idle_in_transaction_s is not None:
        timeout_ms = str(max(1, int(idle_in_transaction_s * 1000)))
        connect_args["server_settings"] = {"idle_in_transaction_session_timeout": timeout_ms}
    if command_timeout_s is not None:
        connect_args["command_timeout"] = command_timeout_s
    if connect_timeout_s is not None:
        connect_args["timeout"] = connect_timeout_s
    engine = create_async_engine(
        url, pool_size=10, max_overflow=10, connect_args=connect_args, **_ENGINE_OPTIONS
    )
    _ping_when_idle(engine)
    if tcp_timeout_s is not None:
        bound_sockets(engine, tcp_timeout_s)
    return engine


# A pooled connection unused this long is checked before it is handed out.
_PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "openwa.checked_in_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a connection taken from the pool only if it lay idle, instead of
    `pool_pre_ping` on every checkout.

    A ping on asyncpg is three round trips (BEGIN, a query, ROLLBACK): on every unit of
    work it was 7 % of the server's time under load. Connections that died (a server
    restart, a dropped network) are found after an idle spell, which is when that happens;
    one that dies while busy fails its unit of work (a 503, a job's retry), and SQLAlchemy
    then drops the pool's other connections of before."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN_AT)
        if checked_in is None or time.monotonic() - checked_in < _PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # As `pool_pre_ping` does: a dead connection usually means the server
            # restarted, so every pooled connection older than now is dropped with it
            # and this checkout gets a new one.
            raise InvalidatePoolError() from exc


def create_reader(url: str, writer: AsyncEngine) -> AsyncEngine:
    """The engine for reads: beside the writer on a SQLite file, the writer itself else."""
    if not is_sqlite(url) or sqlite_path(url) is None:
        return writer
    engine = create_async_engine(
        url,
        pool_size=4,
        max_overflow=0,
        pool_timeout=60,
        connect_args=_SQLITE_CONNECT_ARGS,
        module=one_trip_dbapi(),
        **_ENGINE_OPTIONS,
    )
    _configure_sqlite(engine, reader=True)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions of a class of their own, so listeners of one app (such as its session
    directory) hear only its own units of work, even with several apps in one process."""
    session_class = type("AppSession", (UnitOfWorkSession,), {})
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class)


def session_class(factory: async_sessionmaker[AsyncSession]) -> type[Session]:
    cls: type[Session] = factory.kw["sync_session_class"]
    return cls


# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled
# back whole, and the same work done again may well succeed.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


# SQLite's SQLITE_BUSY (another connection held the lock past the busy timeout) and
# SQLITE_LOCKED (a conflict within a shared cache), primary codes: Python gives the
# extended code (SQLITE_BUSY_SNAPSHOT is 517), whose low byte is the primary one.
_BUSY_SQLITE_CODES = {5, 6}


def _driver_error(exc: BaseException) -> Any:
    """The driver's own exception behind SQLAlchemy's (asyncpg's, beneath its adapter)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "driver_exception", orig)


def lost_a_deadlock(exc: BaseException) -> bool:
    """Whether `exc` is a transaction PostgreSQL rolled back to break a deadlock (or a
    serialization conflict): nothing of it was written, so it may be run again."""
    driver = _driver_error(exc)
    return getattr(driver, "sqlstate", None) in _RETRYABLE_SQLSTATES


def conflict_detail(exc: BaseException) -> dict[str, str]:
    """What the database said of a conflict, for the logs: PostgreSQL's SQLSTATE, its
    detail (which process waited for which lock of which other) and context (the
    statement's table and row), or SQLite's extended code; without them a deadlock in
    the logs cannot be told from another. PostgreSQL leaves the statements' texts and
    values out of what the client gets; redacted all the same."""
    orig = getattr(exc, "orig", None)
    driver = _driver_error(exc)
    said = {
        "sqlstate": getattr(driver, "sqlstate", None),
        "detail": getattr(driver, "detail", None),
        "context": getattr(driver, "context", None),
        "sqlite_code": getattr(orig, "sqlite_errorname", None),
    }
    return {name: redact_text(str(value)) for name, value in said.items() if value}


def lost_to_a_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization loss on PostgreSQL, or SQLite busy past its timeout:
    a conflict with other work of the moment, which the same call may well pass later."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return lost_a_deadlock(exc) or (isinstance(code, int) and code & 0xFF in _BUSY_SQLITE_CODES)


# PostgreSQL's classes of failure that say nothing of the work that met them: the
# connection (08), resources (53: too many connections, out of memory or disk), the
# server shutting down or not yet taking connections (57P01 to 57P03; 57P04, the
# database dropped, is not passing).
_PASSING_SQLSTATE_PREFIXES = ("08", "53", "57P01", "57P02", "57P03")


# OSErrors of files, not of the network: a missing media file fails again.
_FILES = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def transient(exc: BaseException) -> bool:
    """Whether the database failed for a reason of the moment, not because of the work:
    a conflict with other work (`lost_to_a_conflict`), the connection lost or refused,
    no pooled connection in time, the server out of connections or restarting. The same
    work may well pass a moment later; a value refused, a clash of keys or a bug would
    only fail again. Nothing of the failed transaction was written, except when the
    connection was lost during the commit itself, which may have gone through: work
    tried again after this must be safe to do twice (a run of reports is, as stored
    state: messages by id, statuses forward only; an announcement of it may then go out
    twice, under a new event id).

    An `OSError` is the network's (asyncpg's connect lets them through as they are: a
    name not resolved while the database's container restarts, a host unreachable)."""
    if isinstance(exc, _FILES):
        return False
    if lost_to_a_conflict(exc) or isinstance(exc, (PoolTimeout, OSError, TimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(_driver_error(exc), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_PASSING_SQLSTATE_PREFIXES)
