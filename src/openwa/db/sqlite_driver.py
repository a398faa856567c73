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
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Awaitable, Callable
from sqlite3 import NotSupportedError
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

# What the thread hands back for one statement: description, rows (None without a
# description), row count, last row id.
_Outcome = tuple[Any, list[Any] | None, int, int | None]


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
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            # aiosqlite's own way onto its thread (untyped there).
            call: Callable[..., Awaitable[_Outcome]] = connection._execute
            return await call(_run, connection._conn, operation, parameters, many)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass of the base's


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module given to `create_async_engine(module=...)` for SQLite."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def one_trip_dbapi() -> OneTripDbapi:
    return OneTripDbapi(aiosqlite, sqlite3)
