"""Edits that came before their message (see `PendingEditRow`): kept, and applied when
the message is stored.

Every inbound message would otherwise cost a lookup for an edit that almost never
waits: the ids of waiting edits are kept in memory too (loaded from the table for each
session the first time it is needed), so a message with none costs nothing. Only the
instance running a session adds its edits; when a session starts here (it may have run
on another instance meanwhile), its ids are read again.

The ids follow the table by being read again once `RELOAD_AFTER` old. Maintenance gives
up an edit whose message never came (`maintenance.py`), on whichever instance runs it,
and a rolled-back transaction may leave an id whose row was never written: added ids
stayed for the life of the process, so a long-running server's sets only grew. A reload
is one indexed read per session that gets edits or messages; the table is the only
truth (nothing to tell across instances, unlike a prune that would have to hear of
maintenance's deletes), and a cap could drop an id whose edit still waits. The reload
runs in the caller's transaction, after its own writes are flushed, and reports are
applied one unit of work after another (`db/group_commit.py`): it sees every edit kept
so far, so no id with a row goes missing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.engine import on_commit
from openwa.db.models import MessageRow, PendingEditRow
from openwa.db.repository import Repository
from openwa.engines.base import MessageEdited
from openwa.kit.clock import utcnow
from openwa.messages.edits import apply_edit


class PendingEditRepository(Repository[PendingEditRow]):
    model = PendingEditRow


# How long a session's ids are used before they are read from the table again: the
# table keeps an edit for the message retention (days), so ids an hour stale cost little.
RELOAD_AFTER = timedelta(hours=1)


class PendingEdits:
    def __init__(self) -> None:
        self._waiting: dict[str, set[str]] = {}  # session -> message ids, loaded on first use
        self._loaded_at: dict[str, datetime] = {}

    async def _keys(self, db: AsyncSession, session_id: str) -> set[str]:
        waiting = self._waiting.get(session_id)
        now = utcnow()
        loaded_at = self._loaded_at.get(session_id, now)
        # A wall clock set back reloads too, rather than trusting the old stamp.
        if waiting is None or not loaded_at <= now < loaded_at + RELOAD_AFTER:
            rows = await db.execute(
                select(PendingEditRow.message_id).where(PendingEditRow.session_id == session_id)
            )
            waiting = self._waiting[session_id] = set(rows.scalars())
            self._loaded_at[session_id] = now
        return waiting

    def forget(self, session_id: str) -> None:
        """The session (re)starts here: its waiting edits are read afresh when needed."""
        self._waiting.pop(session_id, None)
        self._loaded_at.pop(session_id, None)

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
        # Dropped once the row's delete commits: a run rolled back (and applied again
        # report by report) must find the id again, or the row would stay behind.
        on_commit(db, partial(waiting.discard, message_id))
        repo = PendingEditRepository(db)
        row = await repo.get(session_id, message_id)
        if row is None:
            waiting.discard(message_id)  # none in the table: nothing to wait for
            return False
        edit = MessageEdited(message_id, message.chat_id, message.sender, row.text, row.edited_at)
        applied = apply_edit(message, edit)
        await repo.delete(row)
        return applied
