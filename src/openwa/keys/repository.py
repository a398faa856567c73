"""Queries on the api_keys table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from openwa.db.models import ApiKeyRow
from openwa.db.repository import Repository
from openwa.kit.pagination import PageParams


class ApiKeyRepository(Repository[ApiKeyRow]):
    model = ApiKeyRow

    async def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        result = await self.db.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
        return result.scalar_one_or_none()

    async def page(self, params: PageParams) -> tuple[list[ApiKeyRow], int]:
        return await self.paginate(
            select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id), params
        )

    async def admin_exists(self) -> bool:
        result = await self.db.execute(
            select(ApiKeyRow.id).where(ApiKeyRow.role == "admin").limit(1)
        )
        return result.first() is not None

    async def lock_admins(self) -> list[tuple[str, list[str] | None, datetime | None]]:
        """Every admin key's (id, sessions, expires_at), fresh from the database and
        locked until the unit of work ends (PostgreSQL; SQLite serialises writers), so
        two admins demoted at once cannot both see the other as the one left."""
        result = await self.db.execute(
            select(ApiKeyRow.id, ApiKeyRow.sessions, ApiKeyRow.expires_at)
            .where(ApiKeyRow.role == "admin")
            .order_by(ApiKeyRow.id)
            .with_for_update()
        )
        return [(row.id, row.sessions, row.expires_at) for row in result]

    async def delete_by_source(self, source: str) -> list[tuple[str, str]]:
        """Delete the keys from `source`; their (id, key hash) pairs."""
        result = await self.db.execute(
            delete(ApiKeyRow)
            .where(ApiKeyRow.source == source)
            .returning(ApiKeyRow.id, ApiKeyRow.key_hash)
        )
        return [(row.id, row.key_hash) for row in result]
