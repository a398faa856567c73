"""Queries on the messages table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.engine import is_postgres
from openwa.db.models import ContactRow, MessageRow
from openwa.db.repository import Repository
from openwa.engines.base import UNDECRYPTABLE
from openwa.kit.clock import utcnow
from openwa.kit.text import clean_text
from openwa.messages.status import MessageStatus

Query = TypeVar("Query", bound=Select[*tuple[Any, ...]])


class MessageRepository(Repository[MessageRow]):
    """`get(session_id, message_id)` comes from the base (the composite primary key)."""

    model = MessageRow

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

    def _locked(self, query: Query) -> Query:
        """`query` holding its rows until the transaction ends, on PostgreSQL (SQLite has
        one writer at a time already: `BEGIN IMMEDIATE`)."""
        return query.with_for_update() if is_postgres(self.db) else query

    def _in_id_order(self, query: Query, session_id: str, ids: Sequence[str]) -> Query:
        # Locks taken in id order: two transactions locking overlapping sets never wait
        # on each other in a cycle.
        where = (MessageRow.session_id == session_id, MessageRow.id.in_(ids))
        return self._locked(query.where(*where).order_by(MessageRow.id))

    async def lock_many(self, session_id: str, ids: Sequence[str]) -> dict[str, MessageRow]:
        """`lock` for many messages by our ids, in id order."""
        if not ids:
            return {}
        query = select(MessageRow).execution_options(populate_existing=True)
        found = await self.db.execute(self._in_id_order(query, session_id, ids))
        return {row.id: row for row in found.scalars()}

    async def lock_chats(
        self, session_id: str, ids: Sequence[str]
    ) -> dict[str, tuple[MessageStatus, str, str | None]]:
        """The statuses of these messages (by our ids), locked as `lock_many` locks them,
        no ORM objects, for the hot path; with each one's chat as it is now (its id and
        LID): a LID's merge may have moved it since it was read."""
        if not ids:
            return {}
        query = select(MessageRow.id, MessageRow.status, MessageRow.chat_id, MessageRow.chat_lid)
        found = await self.db.execute(self._in_id_order(query, session_id, ids))
        return {i: (MessageStatus(status), chat, lid) for i, status, chat, lid in found.all()}

    async def known_types(self, session_id: str, ids: Sequence[str]) -> dict[str, str]:
        """Which of `ids` the session has stored already (by our id), with their
        types, in one query."""
        if not ids:
            return {}
        found = await self.db.execute(
            select(MessageRow.id, MessageRow.type).where(
                MessageRow.session_id == session_id, MessageRow.id.in_(ids)
            )
        )
        return {id_: type_ for id_, type_ in found.all()}

    async def replace_placeholder(self, row: MessageRow) -> None:
        """Put a message WhatsApp delivered at last in place of the `undecryptable`
        placeholder stored under the same id (its status and read state stay)."""
        await self.db.execute(
            update(MessageRow)
            .where(
                MessageRow.session_id == row.session_id,
                MessageRow.id == row.id,
                MessageRow.type == UNDECRYPTABLE,
            )
            .values(
                type=row.type,
                sender=row.sender,
                sender_lid=row.sender_lid,
                chat_lid=row.chat_lid,
                content=row.content,
                media_key=row.media_key,
                timestamp=row.timestamp,
                updated_at=row.updated_at,
            )
        )

    async def lock(self, session_id: str, message_id: str) -> MessageRow | None:
        """`find`, holding the row until the transaction ends, read fresh.

        A status change reads the status and writes the next one: on PostgreSQL the
        row lock keeps another transaction (the sender, the ack path, a sweep) from
        deciding on the same old status in between. SQLite has one writer at a time
        already (`BEGIN IMMEDIATE`). `populate_existing` because an earlier unlocked
        read in the same transaction may have left an older status in the session.
        """
        row = await self.db.get(
            MessageRow,
            (session_id, message_id),
            populate_existing=True,
            with_for_update=True if is_postgres(self.db) else None,
        )
        if row is not None:
            return row
        query = (
            select(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.engine_id == message_id)
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return (await self.db.execute(self._locked(query))).scalar_one_or_none()


async def upsert_contact(
    db: AsyncSession, session_id: str, chat_id: str, *, push_name: str | None = None
) -> None:
    """Remember a contact the session has talked with (keeping a known push name)."""
    push_name = clean_text(push_name, 256)  # the column's length
    row = await db.get(ContactRow, (session_id, chat_id))
    if row is None:
        db.add(
            ContactRow(
                session_id=session_id, chat_id=chat_id, push_name=push_name, updated_at=utcnow()
            )
        )
    elif push_name and row.push_name != push_name:
        row.push_name, row.updated_at = push_name, utcnow()
