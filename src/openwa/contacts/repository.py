"""Queries on the contacts table (rows are written by `messages.repository.upsert_contact`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from openwa.db.models import ContactRow
from openwa.db.repository import Repository
from openwa.kit.chat_ids import is_lid
from openwa.kit.pagination import PageParams


class ContactRepository(Repository[ContactRow]):
    """`get(session_id, chat_id)` comes from the base (the composite primary key)."""

    model = ContactRow

    async def page(self, session_id: str, params: PageParams) -> tuple[list[ContactRow], int]:
        """The session's contacts by address: the primary key order, stable on both databases."""
        statement = (
            select(ContactRow)
            .where(ContactRow.session_id == session_id)
            .order_by(ContactRow.chat_id)
        )
        return await self.paginate(statement, params)

    async def by_lid(self, session_id: str, lid: str) -> ContactRow | None:
        """The phone-number contact a LID is mapped to, if any."""
        found = await self.db.execute(
            select(ContactRow)
            .where(ContactRow.session_id == session_id, ContactRow.lid == lid)
            .limit(1)
        )
        return found.scalar_one_or_none()

    async def phone_id(self, session_id: str, address: str) -> str:
        """The phone-number id a mapped LID stands for (its messages were merged there);
        any other address as given."""
        if not is_lid(address):
            return address
        mapped = await self.by_lid(session_id, address)
        return mapped.chat_id if mapped is not None else address

    async def display_names(self, session_id: str, chat_ids: Sequence[str]) -> dict[str, str]:
        """The name to show for each address that has one: saved name, else push name."""
        if not chat_ids:
            return {}
        rows = await self.db.execute(
            select(ContactRow.chat_id, ContactRow.name, ContactRow.push_name).where(
                ContactRow.session_id == session_id, ContactRow.chat_id.in_(chat_ids)
            )
        )
        names: dict[str, str] = {}
        for chat_id, name, push_name in rows:
            shown = name or push_name
            if shown:
                names[chat_id] = shown
        return names
