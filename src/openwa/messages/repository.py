"""Queries on the messages table."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import MessageRow


class MessageRepository:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def get(self, session_id: str, message_id: str) -> MessageRow | None:
        return await self.db.get(MessageRow, (session_id, message_id))

    def add(self, row: MessageRow) -> None:
        self.db.add(row)
