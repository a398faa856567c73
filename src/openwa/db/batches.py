"""Deleting rows a batch at a time, for retention clean-ups.

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

# Rows deleted per transaction: a few milliseconds of SQLite's writer.
PRUNE_BATCH = 2000

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Prune:
    """The rows a clean-up deletes from one table: `keys`, its primary key's columns;
    `where`, what picks them (read on the key walk, so best on indexed columns or
    cheap per row); `recheck`, what is only checked as they are deleted (an anti-join
    that would make every batch's read hash or sort the whole table)."""

    keys: Sequence[Any]
    where: Sequence[ColumnElement[bool]]
    recheck: Sequence[ColumnElement[bool]] = field(default=())

    @property
    def key(self) -> Any:
        return self.keys[0] if len(self.keys) == 1 else tuple_(*self.keys)

    async def next_keys(self, read: AsyncSession, limit: int, after: Key | None) -> list[Key]:
        """Up to `limit` keys of rows to delete, in key order, after `after`; fewer
        than `limit` means the walk has reached the end."""
        conditions = list(self.where)
        if after is not None:
            conditions.append(self.key > (after[0] if len(after) == 1 else tuple_(*after)))
        found = select(*self.keys).where(*conditions).order_by(*self.keys).limit(limit)
        return [tuple(row) for row in await read.execute(found)]

    async def delete(self, db: AsyncSession, keys: Sequence[Key]) -> int:
        """Delete the rows of `keys` that still match: how many went."""
        named = [key[0] for key in keys] if len(self.keys) == 1 else list(keys)
        statement = delete(self.keys[0].table).where(
            self.key.in_(named), *self.where, *self.recheck
        )
        result = await db.execute(statement)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
