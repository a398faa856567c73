"""Edits that came before their message (see `PendingEditRow`): kept, and applied when
the message is stored.

Every inbound message would otherwise cost a lookup for an edit that almost never
waits: the ids of waiting edits are kept in memory too (loaded from the table for each
session the first time it is needed), so a message with none costs nothing. Only the
instance running a session adds its edits; when a session starts here (it may have run
on another instance meanwhile), its ids are read again.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import MessageRow, PendingEditRow
from openwa.db.repository import Repository
from openwa.engines.base import MessageEdited
from openwa.kit.clock import utcnow
from openwa.messages.edits import apply_edit


class PendingEditRepository(Repository[PendingEditRow]):
    model = PendingEditRow


class PendingEdits:
    def __init__(self) -> None:
        self._waiting: dict[str, set[str]] = {}  # session -> message ids, loaded on first use

    async def _keys(self, db: AsyncSession, session_id: str) -> set[str]:
        waiting = self._waiting.get(session_id)
        if waiting is None:
            rows = await db.execute(
                select(PendingEditRow.message_id).where(PendingEditRow.session_id == session_id)
            )
            waiting = self._waiting[session_id] = set(rows.scalars())
        return waiting

    def forget(self, session_id: str) -> None:
        """The session (re)starts here: its waiting edits are read afresh when needed."""
        self._waiting.pop(session_id, None)

    async def keep(self, db: AsyncSession, session_id: str, edit: MessageEdited) -> None:
        """The edit waits for its message; of two waiting edits the later one stays."""
        waiting = await self._keys(db, session_id)
        repo = PendingEditRepository(db)
        row = await repo.get(session_id, edit.id)
        if row is None:
            repo.add(
                PendingEditRow(
                    session_id=session_id,
                    message_id=edit.id,
                    text=edit.text,
                    edited_at=edit.edited_at,
                    created_at=utcnow(),
                )
            )
        elif edit.edited_at >= row.edited_at:
            row.text, row.edited_at = edit.text, edit.edited_at
        # A rolled-back transaction leaves a key without a row: harmless, one lookup.
        waiting.add(edit.id)

    async def apply(
        self, db: AsyncSession, session_id: str, message_id: str, message: MessageRow
    ) -> bool:
        """Give `message` (being stored; `message_id` as the engine named it) the edit
        waiting for it, if any; True if one was."""
        waiting = await self._keys(db, session_id)
        if message_id not in waiting:
            return False
        waiting.discard(message_id)
        repo = PendingEditRepository(db)
        row = await repo.get(session_id, message_id)
        if row is None:
            return False
        edit = MessageEdited(message_id, message.chat_id, message.sender, row.text, row.edited_at)
        applied = apply_edit(message, edit)
        await repo.delete(row)
        return applied
