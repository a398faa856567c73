"""Queries on the audit log and on the (key, address) pairs already seen."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from openwa.audit.schemas import AuditFilters
from openwa.db.engine import is_postgres
from openwa.db.models import ApiKeyRow, AuditRow, KeyAddressRow
from openwa.db.repository import Repository
from openwa.kit.pagination import PageParams


class AuditRepository(Repository[AuditRow]):
    model = AuditRow

    async def page(self, filters: AuditFilters, params: PageParams) -> tuple[list[AuditRow], int]:
        """Newest first; each filter has an index that reads in that order."""
        statement: Select[AuditRow] = select(AuditRow).order_by(AuditRow.id.desc())
        if filters.key_id is not None:
            statement = statement.where(AuditRow.key_id == filters.key_id)
        if filters.session_id is not None:
            statement = statement.where(AuditRow.session_id == filters.session_id)
        if filters.action is not None:
            statement = statement.where(AuditRow.action == filters.action)
        if filters.since is not None:
            statement = statement.where(AuditRow.at >= filters.since)
        return await self.paginate(statement, params)

    async def claim_pair(self, key_id: str, address: str, now: datetime) -> bool:
        """Record the pair unless it is there already; whether this call recorded it.

        Concurrent claims of one pair (other instances) wait on the primary key and
        only one of them inserts."""
        dialect = postgresql if is_postgres(self.db) else sqlite
        statement = (
            dialect.insert(KeyAddressRow)
            .values(key_id=key_id, address=address, first_seen_at=now)
            .on_conflict_do_nothing()
        )
        result = await self.db.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def prune_pairs(self, cutoff: datetime) -> None:
        """Pairs of deleted keys (they can never be used again), and pairs first seen
        before `cutoff`, whose `key_first_use` entry has aged out of the log too: kept,
        they grew with every address a key was ever used from. A key seen again from
        such an address has its first use recorded anew."""
        await self.db.execute(
            delete(KeyAddressRow).where(
                or_(
                    KeyAddressRow.key_id.not_in(select(ApiKeyRow.id)),
                    KeyAddressRow.first_seen_at < cutoff,
                )
            )
        )
