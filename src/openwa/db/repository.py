"""The base every repository shares: one table's rows on the caller's `AsyncSession`.

A repository never opens, commits or rolls back a transaction: the unit of work that
hands it the session (a request's `DbDep`, a job's `async with factory() as db,
db.begin()`) does, once. Repositories read, add and flush; pagination is written here
once, for every list endpoint.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import Base
from openwa.kit.pagination import PageParams

RowT = TypeVar("RowT", bound=Base)
ItemT = TypeVar("ItemT")


class Repository(Generic[RowT]):
    """Queries on `model`'s table in the session of the caller's unit of work."""

    model: type[RowT]

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def get(self, *key: Any) -> RowT | None:
        """A row by its primary key (the columns in order, for a composite key)."""
        return await self.db.get(self.model, key if len(key) > 1 else key[0])

    def add(self, row: RowT) -> None:
        self.db.add(row)

    async def delete(self, row: RowT) -> None:
        # Flushed at once: a later statement of the same unit of work (an insert under
        # the same unique name) must not see the row any more.
        await self.db.delete(row)
        await self.db.flush()

    async def paginate(
        self, statement: Select[ItemT], params: PageParams
    ) -> tuple[list[ItemT], int]:
        """One page of `statement` (already ordered, stably) and the total it would return.

        The total counts the statement itself as a subquery, so a grouped or filtered
        statement counts what it returns; a page past the end skips the second query.
        """
        counted = select(func.count()).select_from(statement.order_by(None).subquery())
        total: int = (await self.db.execute(counted)).scalar_one()
        if total == 0 or params.offset >= total:
            return [], total
        page = await self.db.execute(statement.offset(params.offset).limit(params.limit))
        return list(page.scalars()), total
