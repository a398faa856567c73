"""Queries on the messages table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import ContactRow, MessageRow
from openwa.kit.clock import utcnow


class MessageRepository:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def get(self, session_id: str, message_id: str) -> MessageRow | None:
        return await self.db.get(MessageRow, (session_id, message_id))

    async def find(self, session_id: str, message_id: str) -> MessageRow | None:
        """A message by our id or by the id its engine gave it (acks, reactions and
        revokes from engines that could not send under our id name theirs)."""
        row = await self.get(session_id, message_id)
        if row is not None:
            return row
        found = await self.db.execute(
            select(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.engine_id == message_id)
            .limit(1)
        )
        return found.scalar_one_or_none()

    async def known_ids(self, session_id: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the session has stored already (by our id), in one query."""
        if not ids:
            return set()
        found = await self.db.execute(
            select(MessageRow.id).where(MessageRow.session_id == session_id, MessageRow.id.in_(ids))
        )
        return set(found.scalars())

    def add(self, row: MessageRow) -> None:
        self.db.add(row)


async def upsert_contact(
    db: AsyncSession, session_id: str, chat_id: str, *, push_name: str | None = None
) -> None:
    """Remember a contact the session has talked with (keeping a known push name)."""
    row = await db.get(ContactRow, (session_id, chat_id))
    if row is None:
        db.add(
            ContactRow(
                session_id=session_id, chat_id=chat_id, push_name=push_name, updated_at=utcnow()
            )
        )
    elif push_name and row.push_name != push_name:
        row.push_name, row.updated_at = push_name, utcnow()
