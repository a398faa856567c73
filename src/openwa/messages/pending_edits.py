"""Edits that came before their message (see `PendingEditRow`): kept, and applied when
the message is stored.

Every inbound message would otherwise cost a lookup for an edit that almost never
waits: the ids of waiting edits are kept in memory too (loaded once from the table),
so a message with none costs nothing.
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
        self._waiting: set[tuple[str, str]] | None = None  # loaded on first use

    async def _keys(self, db: AsyncSession) -> set[tuple[str, str]]:
        if self._waiting is None:
            rows = await db.execute(select(PendingEditRow.session_id, PendingEditRow.message_id))
            self._waiting = {(session, message) for session, message in rows}
        return self._waiting

    async def keep(self, db: AsyncSession, session_id: str, edit: MessageEdited) -> None:
        """The edit waits for its message; of two waiting edits the later one stays."""
        waiting = await self._keys(db)
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
        waiting.add((session_id, edit.id))

    async def apply(
        self, db: AsyncSession, session_id: str, message_id: str, message: MessageRow
    ) -> bool:
        """Give `message` (being stored; `message_id` as the engine named it) the edit
        waiting for it, if any; True if one was."""
        waiting = await self._keys(db)
        if (session_id, message_id) not in waiting:
            return False
        waiting.discard((session_id, message_id))
        repo = PendingEditRepository(db)
        row = await repo.get(session_id, message_id)
        if row is None:
            return False
        edit = MessageEdited(message_id, message.chat_id, message.sender, row.text, row.edited_at)
        applied = apply_edit(message, edit)
        await repo.delete(row)
        return applied
