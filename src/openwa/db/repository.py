"""The base every repository shares: one table's rows on the caller's `AsyncSession`.

A repository never opens, commits or rolls back a transaction: the unit of work that
hands it the session (a request's `DbDep`, a job's `async with factory() as db,
db.begin()`) does, once. Repositories read, add and flush; pagination is written here
once, for every list endpoint.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import Base
from openwa.kit.pagination import PageParams

RowT = TypeVar("RowT", bound=Base)
ItemT = TypeVar("ItemT")

# Why a unit of work holds a row it has read (`Repository.get_held`).
Held = Literal["to change", "to refer to"]


class Repository(Generic[RowT]):
    """Queries on `model`'s table in the session of the caller's unit of work."""

    model: type[RowT]

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def get(self, *key: Any) -> RowT | None:
        """A row by its primary key (the columns in order, for a composite key)."""
        return await self.db.get(self.model, key if len(key) > 1 else key[0])

    async def get_held(self, *key: Any, held: Held) -> RowT | None:
        """A row by its primary key, held against deletes until the unit of work ends,
        for one that writes after it reads (PostgreSQL; SQLite runs one writer at a
        time): a delete committed in between would leave a change nothing to update
        ("to change": FOR NO KEY UPDATE), or break the foreign key of a row added that
        refers to this one ("to refer to": FOR KEY SHARE). Neither holds back other units
        of work that add rows referring to it, so neither waits for the event counter's
        holders."""
        return await self.db.get(
            self.model,
            key if len(key) > 1 else key[0],
            with_for_update={"read": held == "to refer to", "key_share": True},
            populate_existing=True,
        )

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
