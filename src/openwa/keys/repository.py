"""Queries on the api_keys table."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import ApiKeyRow
from openwa.kit.pagination import PageParams


class ApiKeyRepository:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        result = await self.db.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
        return result.scalar_one_or_none()

    async def get(self, key_id: str) -> ApiKeyRow | None:
        return await self.db.get(ApiKeyRow, key_id)

    async def page(self, params: PageParams) -> tuple[list[ApiKeyRow], int]:
        total = (await self.db.execute(select(func.count()).select_from(ApiKeyRow))).scalar_one()
        rows = await self.db.execute(
            select(ApiKeyRow)
            .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            .offset(params.offset)
            .limit(params.limit)
        )
        return list(rows.scalars()), total

    async def admin_exists(self) -> bool:
        result = await self.db.execute(
            select(ApiKeyRow.id).where(ApiKeyRow.role == "admin").limit(1)
        )
        return result.first() is not None

    async def delete_by_source(self, source: str) -> list[tuple[str, str]]:
        """Delete the keys from `source`; their (id, key hash) pairs."""
        result = await self.db.execute(
            delete(ApiKeyRow)
            .where(ApiKeyRow.source == source)
            .returning(ApiKeyRow.id, ApiKeyRow.key_hash)
        )
        return [(row.id, row.key_hash) for row in result]

    def add(self, row: ApiKeyRow) -> None:
        self.db.add(row)

    async def delete(self, row: ApiKeyRow) -> None:
        await self.db.delete(row)
        await self.db.flush()
