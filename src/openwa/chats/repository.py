"""Queries that see the messages table as chats: one chat per `chat_id` of a session.

There is no chats table: a chat is the group of a session's messages with one `chat_id`,
and its activity the newest `timestamp` among them. The index on
`(session_id, chat_id, timestamp)` answers the grouping and the history without a scan
of the table's other columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, select, update

from openwa.db.models import MessageRow
from openwa.db.repository import Repository
from openwa.kit.pagination import PageParams

# Bound parameters per statement stay far below SQLite's and asyncpg's limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ChatSummary:
    chat_id: str
    last_activity_at: datetime
    last_message: MessageRow
    unread_count: int


def _inbound_unread(session_id: str, chat_ids: Sequence[str]) -> Any:
    return and_(
        MessageRow.session_id == session_id,
        MessageRow.chat_id.in_(chat_ids),
        MessageRow.from_me.is_(False),
        MessageRow.read_at.is_(None),
    )


# Reads of a page at most, when a merge keeps taking chats away under it.
_PAGE_TRIES = 3


class ChatRepository(Repository[MessageRow]):
    model = MessageRow

    async def page(self, session_id: str, params: PageParams) -> tuple[list[ChatSummary], int]:
        """The session's chats, newest activity first (ties by chat id), with the total.

        Read in several statements: on PostgreSQL (one snapshot per statement) a LID's
        merge that commits between them takes a chat away under the page, which then
        answered fewer chats than it named (`data: []`, `total: 1`). Such a page is
        read again."""
        for _ in range(_PAGE_TRIES - 1):
            chats, total, complete = await self._page(session_id, params)
            if complete:
                return chats, total
        chats, total, _complete = await self._page(session_id, params)
        return chats, total

    async def _page(
        self, session_id: str, params: PageParams
    ) -> tuple[list[ChatSummary], int, bool]:
        last_at = func.max(MessageRow.timestamp)
        chats = (
            select(MessageRow.chat_id)
            .where(MessageRow.session_id == session_id)
            .group_by(MessageRow.chat_id)
            .order_by(last_at.desc(), MessageRow.chat_id)
        )
        chat_ids, total = await self.paginate(chats, params)
        if not chat_ids:
            return [], total, True

        window = (
            select(MessageRow.chat_id.label("chat_id"), last_at.label("last_at"))
            .where(MessageRow.session_id == session_id, MessageRow.chat_id.in_(chat_ids))
            .group_by(MessageRow.chat_id)
            .subquery()
        )
        # The newest message of each chat of the page, joined on the chat's newest time.
        rows = await self.db.execute(
            select(MessageRow, window.c.last_at)
            .join(
                window,
                and_(
                    MessageRow.chat_id == window.c.chat_id,
                    MessageRow.timestamp == window.c.last_at,
                ),
            )
            .where(MessageRow.session_id == session_id)
        )
        newest: dict[str, tuple[MessageRow, datetime]] = {}
        for message, at in rows:
            # Two messages of one chat may share the newest time: keep the later stored.
            kept = newest.get(message.chat_id)
            if kept is None or (message.created_at, message.id) > (
                kept[0].created_at,
                kept[0].id,
            ):
                newest[message.chat_id] = (message, at)

        unread = await self.unread_counts(session_id, list(newest))
        summaries = [
            ChatSummary(
                chat_id=chat_id,
                last_activity_at=at,
                last_message=message,
                unread_count=unread.get(chat_id, 0),
            )
            for chat_id, (message, at) in newest.items()
        ]
        order = {chat_id: index for index, chat_id in enumerate(chat_ids)}
        summaries.sort(key=lambda chat: order[chat.chat_id])
        return summaries, total, len(summaries) == len(chat_ids)

    async def unread_counts(self, session_id: str, chat_ids: Sequence[str]) -> dict[str, int]:
        if not chat_ids:
            return {}
        rows = await self.db.execute(
            select(MessageRow.chat_id, func.count())
            .where(_inbound_unread(session_id, chat_ids))
            .group_by(MessageRow.chat_id)
        )
        return {chat_id: count for chat_id, count in rows}

    async def history(
        self, session_id: str, chat_id: str, params: PageParams
    ) -> tuple[list[MessageRow], int]:
        """The chat's stored messages, newest first, with the total."""
        statement = (
            select(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.chat_id == chat_id)
            .order_by(
                MessageRow.timestamp.desc(), MessageRow.created_at.desc(), MessageRow.id.desc()
            )
        )
        return await self.paginate(statement, params)

    async def unread(self, session_id: str, chat_id: str) -> dict[str, str | None]:
        """The chat's inbound messages not yet marked read, oldest first: id -> sender."""
        rows = await self.db.execute(
            select(MessageRow.id, MessageRow.sender)
            .where(_inbound_unread(session_id, [chat_id]))
            # As the history orders them: messages of one burst share a millisecond.
            .order_by(MessageRow.timestamp, MessageRow.created_at, MessageRow.id)
        )
        return {message_id: sender for message_id, sender in rows}

    async def mark_read(self, session_id: str, message_ids: Sequence[str], at: datetime) -> int:
        """Set `read_at` on those of `message_ids` still unread; how many were. By id
        alone (ids are the session's own): a LID's merge that moved them to the phone
        number's chat since they were read (during the engine's call) moves no mark."""
        marked = 0
        for start in range(0, len(message_ids), _CHUNK):
            chunk = message_ids[start : start + _CHUNK]
            result = await self.db.execute(
                update(MessageRow)
                .where(
                    MessageRow.session_id == session_id,
                    MessageRow.id.in_(chunk),
                    MessageRow.from_me.is_(False),
                    MessageRow.read_at.is_(None),
                )
                .values(read_at=at, updated_at=at)
                .execution_options(synchronize_session=False)
            )
            marked += cast(CursorResult[Any], result).rowcount
        return marked
