"""Deleting rows a batch at a time, for retention clean-ups.

A clean-up in one statement holds its transaction for as long as it runs: on SQLite
that is the one writer, so every accepted send, report and delivery result waits behind
a first prune of a year's events; on PostgreSQL, one transaction over millions of rows
(their locks, their WAL, a replica's lag at once). A batch is one short transaction,
and the next one starts only after the others waiting for the writer had their turn.

The batches walk the table in primary-key order, each from where the last one ended:
a batch that searched from the start again would read again, each time, the rows kept
before it (a pending delivery's event, a message still waiting to be sent) and, on
PostgreSQL, the pages emptied by the batches before it (quadratic on a large backlog).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

# Rows deleted per transaction: a few milliseconds of SQLite's writer.
PRUNE_BATCH = 2000

Key = tuple[Any, ...]


async def delete_some(
    db: AsyncSession,
    keys: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    limit: int,
    after: Key | None,
) -> tuple[int, Key | None]:
    """Delete the first `limit` rows matching `where` whose primary key (`keys`, the
    columns of one table's) comes after `after`, in the database's order of keys: how
    many were deleted, and the last key of the batch, where the next one starts (None
    once no row is left).

    The batch is a range of keys, (after, the limit-th key], found by reading keys in
    index order; the delete names the range, never a list of the keys (no bound on the
    parameters of a statement to meet, whatever the batch)."""
    key: Any = keys[0] if len(keys) == 1 else tuple_(*keys)
    conditions = list(where)
    if after is not None:
        conditions.append(key > _literal(after))
    found = select(*keys).where(*conditions).order_by(*keys).offset(limit - 1).limit(1)
    last = (await db.execute(found)).first()
    if last is not None:
        conditions.append(key <= _literal(tuple(last)))
    result = await db.execute(delete(keys[0].table).where(*conditions))
    deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted, tuple(last) if last is not None else None


def _literal(key: Key) -> Any:
    return key[0] if len(key) == 1 else tuple_(*key)
