"""Deleting rows a batch at a time, for retention clean-ups and a session's delete.

A clean-up in one statement holds its transaction for as long as it runs: on SQLite
that is the one writer, so every accepted send, report and delivery result waits behind
a first prune of a year's events; on PostgreSQL, one transaction over millions of rows
(their locks, their WAL, a replica's lag at once). So a clean-up goes a batch at a time:

- the keys of a batch are read beside the writer (the reader, which on SQLite holds no
  write lock), walking the primary key from where the last batch ended, so the rows
  kept (a pending delivery's event, a message still waiting to be sent) are passed
  once, not read again by every batch;
- the writer deletes exactly those keys, the whole condition checked again (a row may
  have changed since it was read), in a short transaction of its own;
- the next batch starts only after whoever waits for the writer had its turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.retry import again_if_deadlocked
from openwa.db.unit_of_work import unit_of_work

# Rows deleted per transaction: a few milliseconds of SQLite's writer.
PRUNE_BATCH = 2000

Key = tuple[Any, ...]
# First-column values a statement names at most (`Prune._named`).
_GROUPS = 200


@dataclass(frozen=True)
class Prune:
    """The rows a clean-up deletes from one table: `keys`, the columns the walk goes by
    (its primary key's, or an index's ending in a unique column); `where`, what picks
    them (read on the key walk, so best on indexed columns or cheap per row); `recheck`,
    what is only checked as they are deleted (an anti-join that would make every
    batch's read hash or sort the whole table); `by_last`: the last key column alone
    names a row (a serial id), and the delete looks rows up by it rather than by the
    whole key (SQLite looks a list of composite keys up by their first column alone,
    and checks every row under it against the list)."""

    keys: Sequence[Any]
    where: Sequence[ColumnElement[bool]]
    recheck: Sequence[ColumnElement[bool]] = field(default=())
    by_last: bool = False

    @property
    def key(self) -> Any:
        return self.keys[0] if len(self.keys) == 1 else tuple_(*self.keys)

    async def next_keys(self, read: AsyncSession, limit: int, after: Key | None) -> list[Key]:
        """Up to `limit` keys of rows to delete, in key order, after `after`; fewer
        than `limit` means the walk has reached the end."""
        conditions = list(self.where)
        if after is not None:
            # A plain tuple, so each value is bound as its key column's type (a UTC
            # datetime as the column stores it).
            conditions.append(self.key > (after[0] if len(after) == 1 else after))
        found = select(*self.keys).where(*conditions).order_by(*self.keys).limit(limit)
        return [tuple(row) for row in await read.execute(found)]

    async def delete(self, db: AsyncSession, keys: Sequence[Key]) -> int:
        """Delete the rows of `keys` that still match: how many went."""
        deleted = 0
        for named in self._named(keys):
            statement = delete(self.keys[0].table).where(named, *self.where, *self.recheck)
            result = await db.execute(statement)
            deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return deleted

    def _named(self, keys: Sequence[Key]) -> list[ColumnElement[bool]]:
        """What names the rows of `keys`, a statement's worth each."""
        if self.by_last:
            return [self.keys[-1].in_([key[-1] for key in keys])]
        if len(self.keys) == 1:
            return [self.key.in_([key[0] for key in keys])]
        if len(self.keys) > 2:
            return [self.key.in_(list(keys))]
        # By the first column's value, then the second's list: a list of pairs
        # (`(session_id, id) IN (VALUES ...)`) made SQLite scan the whole table (112 ms
        # a batch at 300k messages, growing with it; 40 ms so). At most `_GROUPS` values
        # a statement: SQLite parses a chain of ORs as a tree no deeper than 1,000.
        groups: dict[Any, list[Any]] = {}
        for first, second in keys:
            groups.setdefault(first, []).append(second)
        items = list(groups.items())
        return [
            or_(
                *(
                    and_(self.keys[0] == first, self.keys[1].in_(seconds))
                    for first, seconds in items[start : start + _GROUPS]
                )
            )
            for start in range(0, len(items), _GROUPS)
        ]


async def delete_in_batches(
    db: async_sessionmaker[AsyncSession],
    read: async_sessionmaker[AsyncSession],
    prune: Prune,
    batch: int,
    *,
    retried: str | None = None,
    **fields: Any,
) -> int:
    """Delete what `prune` names, `batch` rows at a time: each batch's keys read on
    `read` (beside the writer), then deleted in a unit of work of its own on `db`, and
    whoever waits for the writer goes before the next batch. Rows deleted.

    `retried`: a batch PostgreSQL rolls back to break a deadlock (rows a worker holds
    meanwhile) is deleted again, the retry logged as this event with `fields`; without
    it, the loss is raised."""
    removed, after = 0, None
    while True:
        async with read() as session:
            keys = await prune.next_keys(session, batch, after)
        if keys:
            if retried is None:
                removed += await _delete(db, prune, keys)
            else:
                removed += await again_if_deadlocked(
                    partial(_delete, db, prune, keys), event=retried, **fields
                )
            after = keys[-1]
        if len(keys) < batch:
            return removed
        # Whoever waits for the writer (on SQLite, every other write) goes first.
        await asyncio.sleep(0)


async def _delete(db: async_sessionmaker[AsyncSession], prune: Prune, keys: Sequence[Key]) -> int:
    async with unit_of_work(db) as session:
        return await prune.delete(session, keys)
