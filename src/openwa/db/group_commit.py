"""Group commit: concurrent units of work written in one transaction, each answered after it.

A commit costs a WAL flush (PostgreSQL) or a round of aiosqlite hops (SQLite) however
little it writes, so under load writing each request in its own transaction spends most
of its time committing. Callers hand a unit of work (a coroutine function taking the
session) to `run`; one writer task takes everything queued, runs the units one after
another in a single transaction, commits once, then resolves every caller's future: each
caller is answered only once its work is durable, as before.

One unit must not sink the others. If anything in a batch fails (a NUL byte that
PostgreSQL refuses, a unique clash, an error a unit raised), the batch is rolled back and
every unit is run again alone, in a transaction of its own: only the one that fails alone
gets the error, the others commit. Units therefore must be safe to run twice (they are:
nothing they did in the rolled-back attempt survives, and they must not have outside
effects before the commit; use `on_commit` for those).

A writer that `carries_requests` commits units on behalf of HTTP requests (accepted
sends): each unit also runs its request's `request_work` (the audit entry), so that
commits with the change, in the same transaction, at no extra round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.commits import note_commit
from openwa.db.unit_of_work import request_work

log = structlog.get_logger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]


class _Item(Generic[T]):
    __slots__ = ("future", "work")

    def __init__(self, work: Work[T], future: asyncio.Future[T]) -> None:
        self.work = work
        self.future = future


def _with_request_work(work: Work[T], extra: Callable[[AsyncSession], Awaitable[None]]) -> Work[T]:
    # Captured here, in the request's context: the writer task runs in a context of its own.
    async def unit(db: AsyncSession) -> T:
        result = await work(db)
        await extra(db)
        return result

    return unit


class GroupCommit:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        name: str,
        max_batch: int = 256,
        carries_requests: bool = False,
        part_of_the_call: bool = True,
    ) -> None:
        """`part_of_the_call=False`: what this one commits is not the change of the
        call that waits for it (the audit's entries), and does not count as one of the
        call's commits (db/commits.py)."""
        self._db = db
        self._name = name
        self._carries_requests = carries_requests
        self._part_of_the_call = part_of_the_call
        self._max_batch = max_batch
        self._queue: list[_Item[Any]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        # Units committed, for tests.
        self.committed = 0

    async def run(self, work: Work[T]) -> T:
        """Run `work` in the next group transaction; its result once that has committed."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        extra = request_work.get() if self._carries_requests else None
        if extra is not None:
            work = _with_request_work(work, extra)
        self._queue.append(_Item(work, future))
        self._wake.set()
        if self._writer is None or self._writer.done():
            # A context of its own: the writer serves every request, it belongs to none.
            self._writer = asyncio.create_task(
                self._write(), name=f"group-commit:{self._name}", context=contextvars.Context()
            )
        result = await future
        if self._part_of_the_call:
            note_commit()  # in the caller's context: the writer's is its own
        return result

    async def close(self) -> None:
        """Finish what is queued, then stop the writer."""
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._commit(batch)
        finally:
            # Cancelled (shutdown): nobody may wait for ever on work that will not run.
            for item in self._queue:
                if not item.future.done():
                    item.future.set_exception(RuntimeError(f"{self._name} stopped"))
            self._queue.clear()

    async def _commit(self, batch: list[_Item[Any]]) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        if len(live) > 1:
            try:
                results = await self._transaction(live)
            except Exception as exc:
                log.info("group_commit_split", name=self._name, size=len(live), error=repr(exc))
            else:
                for item, result in zip(live, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
                return
        for item in live:
            try:
                (result,) = await self._transaction([item])
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)

    async def _transaction(self, items: list[_Item[Any]]) -> list[Any]:
        async with self._db() as db, db.begin():
            results = [await item.work(db) for item in items]
        self.committed += len(items)
        return results
