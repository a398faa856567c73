"""aiosqlite with one trip to its thread per statement.

aiosqlite runs SQLite on a thread of its own, and every call is a trip there and back:
the hand-over through its queue, a wake-up of the event loop, the GIL passed twice.
SQLAlchemy's adapter makes three or four trips for each statement (open a cursor,
execute, fetch the rows, close the cursor). On SQLite, where a unit of work is a dozen
small statements, those trips were a quarter of the server's CPU end to end: the
statements themselves take microseconds.

Here a statement is one trip: the thread opens a cursor, executes, fetches every row and
closes the cursor, and hands back the rows with the description, the row count and the
last row id. The rows were fetched in full before too (SQLAlchemy's adapter buffers
them), so nothing is held longer. A cursor is closed on the thread even when the task
that waits for it is cancelled, so a cancelled query never leaves a half-read statement
holding the write lock (`ClosingConnection` covers the connection's other cursors).

Server-side cursors (`stream()`) keep aiosqlite's own adapter.

The writer goes further and runs its statements on the event loop's own thread, with no
trip at all (`inline`). Its statements are short (a row, a batch of a few hundred, an
indexed claim) and SQLite answers them in microseconds, less than the trip's hand-overs
cost: end to end, 2.2 ms of the server's CPU per event became 1.7. What could make an
inline statement wait is kept off the loop:
- the write lock held by another connection (another process, a test's own): the
  writer's busy timeout is zero, so SQLite answers "busy" at once, and the statement is
  run again on the thread, where it waits as long as SQLite's busy handler would have;
- a checkpoint (copying the WAL into the database file, with its fsyncs): the writer's
  automatic one is off, and a passive checkpoint runs on the thread at most every
  `CHECKPOINT_EVERY_S` after a commit, in a task of its own; once one has copied the
  whole WAL, the next write starts the WAL over, which syncs its header, so the
  connection's statements go to the thread until a commit has written something (from
  its opening too, for the same reason);
- statements that may touch many rows (retention clean-up, cascades of a deleted session
  or webhook, a LID chat merged into its number) run inside `off_the_loop()`, which sends
  them to the thread.
And since an inline statement never yields, a connection whose statements have followed
one another on the loop for `YIELD_EVERY_S` lets the loop take a turn before its next
one, so a long unit of work (a group commit of hundreds of sends) shares the loop as it
did when every statement was a trip.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from sqlite3 import NotSupportedError
from typing import Any, TypeVar

import aiosqlite
import structlog
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_, in_greenlet

# How long a statement that found the database locked waits for it on the thread (as
# `PRAGMA busy_timeout` does for the readers), and how often the writer checkpoints.
BUSY_WAIT_MS = 10_000
CHECKPOINT_EVERY_S = 1.0
YIELD_EVERY_S = 0.002

_off_the_loop: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "openwa_sqlite_off_the_loop", default=False
)


@contextlib.contextmanager
def off_the_loop() -> Iterator[None]:
    """Statements run inside this block go to aiosqlite's thread even on the inline
    writer: for statements that may touch many rows, so the event loop goes on while
    they run. Nothing changes on PostgreSQL, whose statements never run in-process."""
    token = _off_the_loop.set(True)
    try:
        yield
    finally:
        _off_the_loop.reset(token)


# What the thread hands back for one statement: description, rows (None without a
# description), row count, last row id.
_Outcome = tuple[Any, list[Any] | None, int, int | None]
_T = TypeVar("_T")

log = structlog.get_logger(__name__)


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: one statement from cursor to closed cursor."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        # After the fetch: with RETURNING, SQLite counts rows as they are read.
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _waiting(connection: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    """On aiosqlite's thread: `work` with the busy handler on, for an inline writer
    whose statement found the database locked (its busy timeout is zero otherwise)."""
    connection.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}").close()
    try:
        return work()
    finally:
        connection.execute("PRAGMA busy_timeout=0").close()


def _locked(error: BaseException) -> bool:
    """SQLite's "database is locked", extended codes included."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.OperationalError) and code is not None and code & 0xFF == 5


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A DBAPI cursor whose every execute is one call on aiosqlite's thread; it holds
    no aiosqlite cursor, only the outcome of its last statement."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor was closed on the thread."""

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._trip(operation, seq_of_parameters, many=True)

    def nextset(self) -> None:
        raise NotSupportedError("SQLite statements have one result set")

    def setinputsizes(self, *inputsizes: Any) -> None:
        raise NotSupportedError("SQLite takes no input sizes")

    def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        # Nothing of the previous statement stays readable if this one fails.
        self._description, self._rowcount, self._lastrowid = None, -1, None
        self._rows.clear()
        try:
            outcome = await_(self._call(operation, parameters, many))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows.extend(rows or ())

    async def _call(self, operation: Any, parameters: Any, many: bool) -> _Outcome:
        adapt: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        return await adapt.run(lambda conn: _run(conn, operation, parameters, many))


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = (
        "_checkpointing",
        "_inline",
        "_last_checkpoint",
        "_last_end",
        "_streak_start",
        "_wal_reset",
        "_wal_reset_changes",
    )
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass of the base's

    def __init__(self, dbapi: Any, connection: Any, *, inline: bool) -> None:
        super().__init__(dbapi, connection)
        self._inline = inline
        self._last_checkpoint = self._last_end = self._streak_start = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None
        # The WAL may start over at the next write (copied whole, or just opened): off
        # the loop until a commit that wrote moves `total_changes` past this count.
        self._wal_reset = True
        self._wal_reset_changes = 0

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """`work` on the SQLite connection: inline on the writer, else (or inside
        `off_the_loop()`, or while the WAL may start over, or when the database is
        locked) on aiosqlite's thread."""
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        inline = self._inline and not _off_the_loop.get()
        if inline:
            now = time.monotonic()
            if now - self._last_end > YIELD_EVERY_S:
                self._streak_start = now  # the loop had its turns since the last one
            elif now - self._streak_start > YIELD_EVERY_S:
                await asyncio.sleep(0)  # a turn for the loop's other tasks
                self._streak_start = time.monotonic()
        async with self._execute_mutex:
            if not connection._running:
                raise ValueError("Connection closed")  # as aiosqlite's own calls say it
            conn = connection._conn
            # Read under the mutex: a checkpoint may have copied the WAL meanwhile.
            if inline and not self._wal_reset:
                changes = conn.total_changes
                try:
                    return work(conn)
                except sqlite3.OperationalError as error:
                    # Run again only what surely changed nothing (SQLite undoes a
                    # statement that found the database locked).
                    if not _locked(error) or conn.total_changes != changes:
                        raise
                finally:
                    self._last_end = time.monotonic()
            # aiosqlite's own way onto its thread (untyped there).
            call: Callable[..., Awaitable[_T]] = connection._execute
            if self._inline:
                return await call(_waiting, conn, lambda: work(conn))
            return await call(work, conn)

    def commit(self) -> None:
        if not self._inline:
            return super().commit()
        if self._connection._connection:
            try:
                await_(self.run(lambda conn: conn.commit()))
            except Exception as error:
                self._handle_exception(error)
            raw = self._connection._connection
            if self._wal_reset and raw is not None and raw.total_changes != self._wal_reset_changes:
                self._wal_reset = False  # this commit wrote: the WAL has started over
            self._checkpoint_soon()
        return None

    def rollback(self) -> None:
        if not self._inline:
            return super().rollback()
        raw = self._connection._connection
        # The pool's reset of a connection given back: nothing to undo, so no wait
        # for a checkpoint that holds the connection meanwhile.
        try:
            if raw is not None and raw.in_transaction:
                await_(self.run(lambda conn: conn.rollback()))
        except Exception as error:
            self._handle_exception(error)
        finally:
            if self._wal_reset and raw is not None:
                # SQLite counts the changes it then undid: they wrote nothing.
                self._wal_reset_changes = raw.total_changes
        return None

    def close(self) -> None:
        checkpointing = self._checkpointing
        try:
            if checkpointing is not None and in_greenlet():
                await_(_settled(checkpointing))  # it never outlives its connection
        finally:
            super().close()

    def _checkpoint_soon(self) -> None:
        """A passive checkpoint on the thread, at most every `CHECKPOINT_EVERY_S`, in a
        task of its own: the caller that committed does not wait for it, the next use of
        this connection does (the mutex), the loop never."""
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY_S or self._checkpointing is not None:
            return
        self._last_checkpoint = now
        task = asyncio.get_running_loop().create_task(self._checkpoint())
        self._checkpointing = task
        # Cleared however it ends, even cancelled before it began (a loop shutting down).
        task.add_done_callback(self._checkpoint_ended)

    def _checkpoint_ended(self, task: asyncio.Task[None]) -> None:
        if self._checkpointing is task:
            self._checkpointing = None

    async def _checkpoint(self) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        try:
            async with self._execute_mutex:
                if connection._connection is None or not connection._running:
                    return  # a closed connection checkpointed as it closed
                call: Callable[..., Awaitable[bool | None]] = connection._execute
                copied_whole = await call(_checkpoint, connection._conn)
                if copied_whole is None:
                    self._last_checkpoint = 0.0  # inside a transaction: at the next commit
                elif copied_whole:
                    self._wal_reset = True
                    self._wal_reset_changes = connection._conn.total_changes
        except sqlite3.Error as error:
            # The next commit's checkpoint tries again; the WAL grows meanwhile.
            log.warning("sqlite_checkpoint_failed", error=str(error))
        except ValueError:
            pass  # closed meanwhile


async def _settled(task: asyncio.Task[None]) -> None:
    """Until `task` has ended, however it ends; at once if it is another loop's (one
    that is not running would never end it)."""
    if task.get_loop() is asyncio.get_running_loop():
        await asyncio.wait({task})


def _checkpoint(connection: sqlite3.Connection) -> bool | None:
    """On the thread: a passive checkpoint; whether it copied the whole WAL (None when
    the connection is inside a transaction, where SQLite refuses it)."""
    if connection.in_transaction:
        return None
    cursor = connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    try:
        busy, frames, copied = cursor.fetchone()
    finally:
        cursor.close()
    return bool(busy == 0 and frames > 0 and frames == copied)


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module given to `create_async_engine(module=...)` for SQLite;
    `inline` for the writer's (see the module's docstring)."""

    def __init__(self, aiosqlite: Any, sqlite: Any, *, inline: bool) -> None:
        super().__init__(aiosqlite, sqlite)
        self._inline = inline

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        if self._inline:
            # Locked answers at once (`run` then waits on the thread), and the
            # checkpoints are the connection's own (`_checkpoint_soon`).
            raw: sqlite3.Connection = adapted._connection._conn
            for pragma in ("PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0"):
                raw.execute(pragma).close()
        return OneTripConnection(self, adapted._connection, inline=self._inline)


def one_trip_dbapi(*, inline: bool = False) -> OneTripDbapi:
    return OneTripDbapi(aiosqlite, sqlite3, inline=inline)
