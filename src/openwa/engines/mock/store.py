"""The mock network's durable state: what each session transmitted, each phone's inbox.

Like whatsmeow's own tables, this is the engine's store; the composition root hands it
the database. Kept in the database so that it survives restarts and so that tests can
read what was really transmitted (with message ids) after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.base import table_of
from openwa.db.models import (
    MockAccountRow,
    MockConnectionRow,
    MockGroupMemberRow,
    MockGroupRow,
    MockInboxRow,
    MockTransmissionRow,
)
from openwa.kit.clock import utcnow


@dataclass(frozen=True, slots=True)
class Stamp:
    instance: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Transmission:
    message_id: str
    chat_id: str
    payload: dict[str, Any]
    recipients: Sequence[str]


class MockNetworkStore(Protocol):
    async def transmit_many(
        self, session_id: str, transmissions: Sequence[Transmission], stamp: Stamp | None = None
    ) -> list[list[str]]:
        """Log each message as transmitted and put it in each recipient's inbox, in one
        transaction; for each, the recipients for whom it is new (a resent id is dropped,
        as WhatsApp does).
        `stamp` says which instance sent them, under which lease epoch."""
        ...

    async def connected(self, session_id: str, stamp: Stamp) -> int:
        """A session's connection opened: its record's id. An open record of the same
        session is closed as replaced (WhatsApp's "stream replaced")."""
        ...

    async def disconnected(self, connection: int, reason: str) -> None: ...

    async def inboxes(self, phones: Sequence[str], before: datetime) -> list[tuple[str, Any]]:
        """Undelivered payloads for `phones` put in their inbox before `before`."""
        ...

    async def transmissions(self, session_id: str, limit: int) -> list[dict[str, Any]]: ...

    async def undelivered(self, phone: str) -> list[dict[str, Any]]: ...

    async def mark_delivered(self, phone: str, message_ids: Sequence[str]) -> None: ...


class SqlMockNetworkStore:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db

    async def transmit_many(
        self, session_id: str, transmissions: Sequence[Transmission], stamp: Stamp | None = None
    ) -> list[list[str]]:
        now = utcnow()
        ids = [t.message_id for t in transmissions]
        async with self._db() as db, db.begin():
            found = await db.execute(
                select(MockInboxRow.phone, MockInboxRow.message_id).where(
                    MockInboxRow.message_id.in_(ids)
                )
            )
            seen = {(phone, message_id) for phone, message_id in found.all()}
            fresh_lists = []
            inbox: list[dict[str, Any]] = []
            for t in transmissions:
                fresh = []
                for phone in t.recipients:
                    if (phone, t.message_id) in seen:
                        continue
                    seen.add((phone, t.message_id))
                    inbox.append(
                        {
                            "phone": phone,
                            "message_id": t.message_id,
                            "payload": t.payload,
                            "created_at": now,
                        }
                    )
                    fresh.append(phone)
                fresh_lists.append(fresh)
            # One executemany each: a run of sends costs two statements, not a row each.
            await db.execute(
                insert(table_of(MockTransmissionRow)),
                [
                    {
                        "session_id": session_id,
                        "message_id": t.message_id,
                        "chat_id": t.chat_id,
                        "payload": t.payload,
                        "created_at": now,
                        "instance": stamp.instance if stamp else None,
                        "epoch": stamp.epoch if stamp else None,
                    }
                    for t in transmissions
                ],
            )
            if inbox:
                await db.execute(insert(table_of(MockInboxRow)), inbox)
        return fresh_lists

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
                    "type": r.payload.get("type", r.payload.get("kind", "text")),
                    "content": r.payload.get("content", {}),
                    "at": r.created_at,
                }
                for r in result.scalars()
            ]

    async def connected(self, session_id: str, stamp: Stamp) -> int:
        now = utcnow()
        table = MockConnectionRow
        async with self._db() as db, db.begin():
            await db.execute(
                update(table)
                .where(table.session_id == session_id, table.ended_at.is_(None))
                .values(ended_at=now, end_reason=f"replaced by {stamp.instance} ({stamp.epoch})")
            )
            row = table(
                session_id=session_id,
                instance=stamp.instance,
                epoch=stamp.epoch,
                connected_at=now,
            )
            db.add(row)
            await db.flush()
            return row.id

    async def disconnected(self, connection: int, reason: str) -> None:
        table = MockConnectionRow
        async with self._db() as db, db.begin():
            await db.execute(
                update(table)
                .where(table.id == connection, table.ended_at.is_(None))
                .values(ended_at=utcnow(), end_reason=reason[:200])
            )

    async def inboxes(self, phones: Sequence[str], before: datetime) -> list[tuple[str, Any]]:
        if not phones:
            return []
        async with self._db() as db:
            result = await db.execute(
                select(MockInboxRow.phone, MockInboxRow.payload)
                .where(
                    MockInboxRow.phone.in_(list(phones)),
                    MockInboxRow.delivered_at.is_(None),
                    MockInboxRow.created_at < before,
                )
                .order_by(MockInboxRow.created_at)
                .limit(500)
            )
            return [(phone, dict(payload)) for phone, payload in result.all()]

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


class SqlMockDirectory:
    """Accounts and groups of the mock network (tables `mock_accounts`, `mock_groups`...)."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db

    async def register(self, phone: str, session_id: str, push_name: str | None) -> None:
        async with self._db() as db, db.begin():
            row = await db.get(MockAccountRow, phone)
            if row is None:
                db.add(
                    MockAccountRow(
                        phone=phone, session_id=session_id, push_name=push_name, created_at=utcnow()
                    )
                )
            else:
                row.session_id, row.push_name = session_id, push_name

    async def account(self, phone: str) -> MockAccountRow | None:
        async with self._db() as db:
            return await db.get(MockAccountRow, phone)

    async def create_group(
        self, group_id: str, subject: str, creator: str, members: Sequence[str], code: str
    ) -> None:
        async with self._db() as db, db.begin():
            db.add(
                MockGroupRow(
                    id=group_id,
                    subject=subject,
                    description=None,
                    settings={"announce": False, "restrict": False},
                    invite_code=code,
                    created_by=creator,
                    created_at=utcnow(),
                )
            )
            await db.flush()
            db.add(MockGroupMemberRow(group_id=group_id, phone=creator, role="superadmin"))
            for phone in members:
                if phone != creator:
                    db.add(MockGroupMemberRow(group_id=group_id, phone=phone, role="member"))

    async def group(self, group_id: str) -> tuple[MockGroupRow, dict[str, str]] | None:
        async with self._db() as db:
            row = await db.get(MockGroupRow, group_id)
            if row is None:
                return None
            result = await db.execute(
                select(MockGroupMemberRow).where(MockGroupMemberRow.group_id == group_id)
            )
            return row, {m.phone: m.role for m in result.scalars()}

    async def groups_of(self, phone: str) -> list[str]:
        async with self._db() as db:
            result = await db.execute(
                select(MockGroupMemberRow.group_id)
                .where(MockGroupMemberRow.phone == phone)
                .order_by(MockGroupMemberRow.group_id)
            )
            return list(result.scalars())

    async def update_group(self, group_id: str, **fields: Any) -> None:
        async with self._db() as db, db.begin():
            row = await db.get(MockGroupRow, group_id)
            if row is not None:
                for name, value in fields.items():
                    setattr(row, name, value)

    async def set_roles(self, group_id: str, roles: dict[str, str | None]) -> None:
        """Set each phone's role; None removes the phone from the group."""
        async with self._db() as db, db.begin():
            for phone, role in roles.items():
                member = await db.get(MockGroupMemberRow, (group_id, phone))
                if role is None:
                    if member is not None:
                        await db.delete(member)
                elif member is None:
                    db.add(MockGroupMemberRow(group_id=group_id, phone=phone, role=role))
                else:
                    member.role = role
