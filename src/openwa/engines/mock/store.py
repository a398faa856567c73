"""The mock network's durable state: what each session transmitted, each phone's inbox.

Like whatsmeow's own tables, this is the engine's store; the composition root hands it
the database. Kept in the database so that it survives restarts and so that tests can
read what was really transmitted (with message ids) after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import MockInboxRow, MockTransmissionRow
from openwa.kit.clock import utcnow


class MockNetworkStore(Protocol):
    async def transmit(
        self,
        session_id: str,
        message_id: str,
        chat_id: str,
        payload: dict[str, Any],
        recipient: str | None,
        delivered: bool,
    ) -> bool:
        """Log the transmission and put it in `recipient`'s inbox, in one step.

        True when the recipient had not received that id before (it should see it).
        """
        ...

    async def transmissions(self, session_id: str, limit: int) -> list[dict[str, Any]]: ...

    async def undelivered(self, phone: str) -> list[dict[str, Any]]: ...

    async def mark_delivered(self, phone: str, message_ids: Sequence[str]) -> None: ...


class SqlMockNetworkStore:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db

    async def transmit(
        self,
        session_id: str,
        message_id: str,
        chat_id: str,
        payload: dict[str, Any],
        recipient: str | None,
        delivered: bool,
    ) -> bool:
        now = utcnow()
        async with self._db() as db, db.begin():
            db.add(
                MockTransmissionRow(
                    session_id=session_id,
                    message_id=message_id,
                    chat_id=chat_id,
                    payload=payload,
                    created_at=now,
                )
            )
            if recipient is None:
                return False
            if await db.get(MockInboxRow, (recipient, message_id)) is not None:
                return False
            db.add(
                MockInboxRow(
                    phone=recipient,
                    message_id=message_id,
                    payload=payload,
                    created_at=now,
                    delivered_at=now if delivered else None,
                )
            )
        return True

    async def transmissions(self, session_id: str, limit: int) -> list[dict[str, Any]]:
        async with self._db() as db:
            result = await db.execute(
                select(MockTransmissionRow)
                .where(MockTransmissionRow.session_id == session_id)
                .order_by(MockTransmissionRow.id)
                .limit(limit)
            )
            return [
                {
                    "messageId": r.message_id,
                    "chatId": r.chat_id,
                    "type": r.payload.get("type", "text"),
                    "content": r.payload.get("content", {}),
                    "at": r.created_at,
                }
                for r in result.scalars()
            ]

    async def undelivered(self, phone: str) -> list[dict[str, Any]]:
        async with self._db() as db:
            result = await db.execute(
                select(MockInboxRow.payload)
                .where(MockInboxRow.phone == phone, MockInboxRow.delivered_at.is_(None))
                .order_by(MockInboxRow.created_at)
            )
            return [dict(payload) for payload in result.scalars()]

    async def mark_delivered(self, phone: str, message_ids: Sequence[str]) -> None:
        if not message_ids:
            return
        async with self._db() as db, db.begin():
            await db.execute(
                update(MockInboxRow)
                .where(MockInboxRow.phone == phone, MockInboxRow.message_id.in_(message_ids))
                .values(delivered_at=utcnow())
            )
