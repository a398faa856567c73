"""Queries on the messages table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import ContactRow, MessageRow
from openwa.kit.clock import utcnow
from openwa.messages.status import MessageStatus


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

    async def lock_many(self, session_id: str, ids: Sequence[str]) -> dict[str, MessageRow]:
        """`lock` for many messages by our ids, taken in id order so that two
        transactions locking overlapping sets never wait on each other in a cycle."""
        if not ids:
            return {}
        query = (
            select(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.id.in_(ids))
            .order_by(MessageRow.id)
            .execution_options(populate_existing=True)
        )
        if self.db.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        return {row.id: row for row in (await self.db.execute(query)).scalars()}

    async def lock_statuses(self, session_id: str, ids: Sequence[str]) -> dict[str, MessageStatus]:
        """The statuses of these messages (by our ids), their rows locked in id order on
        PostgreSQL as `lock_many` does; no ORM objects, for the hot path."""
        if not ids:
            return {}
        query = (
            select(MessageRow.id, MessageRow.status)
            .where(MessageRow.session_id == session_id, MessageRow.id.in_(ids))
            .order_by(MessageRow.id)
        )
        if self.db.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        return {id_: MessageStatus(status) for id_, status in (await self.db.execute(query)).all()}

    async def known_ids(self, session_id: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the session has stored already (by our id), in one query."""
        if not ids:
            return set()
        found = await self.db.execute(
            select(MessageRow.id).where(MessageRow.session_id == session_id, MessageRow.id.in_(ids))
        )
        return set(found.scalars())

    async def lock(self, session_id: str, message_id: str) -> MessageRow | None:
        """`find`, holding the row until the transaction ends, read fresh.

        A status change reads the status and writes the next one: on PostgreSQL the
        row lock keeps another transaction (the sender, the ack path, a sweep) from
        deciding on the same old status in between. SQLite has one writer at a time
        already (`BEGIN IMMEDIATE`). `populate_existing` because an earlier unlocked
        read in the same transaction may have left an older status in the session.
        """
        postgres = self.db.get_bind().dialect.name == "postgresql"
        row = await self.db.get(
            MessageRow,
            (session_id, message_id),
            populate_existing=True,
            with_for_update=True if postgres else None,
        )
        if row is not None:
            return row
        query = (
            select(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.engine_id == message_id)
            .limit(1)
            .execution_options(populate_existing=True)
        )
        if postgres:
            query = query.with_for_update()
        return (await self.db.execute(query)).scalar_one_or_none()

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
