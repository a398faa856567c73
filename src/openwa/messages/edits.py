"""Edits: a stored message takes its new text and keeps the ones it had before.

The history (`edits`) holds each earlier text with the time the edit replaced it, oldest
first, so nothing a message ever said is lost: its first text is `edits[0].text` and its
current one `text` (or `caption`, for media).
"""

from __future__ import annotations

from typing import Any

from openwa.db.models import MessageRow
from openwa.engines.base import MessageEdited
from openwa.kit.clock import iso


def edited_field(row: MessageRow) -> str:
    """Where the message's editable text lives: `text`, or a media message's `caption`."""
    content = row.content or {}
    return "text" if row.type == "text" or "text" in content else "caption"


def apply_edit(row: MessageRow, edit: MessageEdited) -> bool:
    """Give `row` the edit's text, keeping the text it replaces; False when the message
    says that already (the same edit reported twice, live and from history)."""
    field = edited_field(row)
    content = dict(row.content or {})
    previous = content.get(field)
    if previous == edit.text:
        return False
    # New objects, not changes in place: the ORM sees a JSON column change by assignment.
    row.edits = [*(row.edits or []), {"text": previous or "", "at": iso(edit.edited_at)}]
    content[field] = edit.text
    row.content = content
    return True


def edited_data(message_id: str, edit: MessageEdited) -> dict[str, Any]:
    """A `message.edited` event's data."""
    return {
        "id": message_id,
        "chatId": edit.chat_id,
        "from": edit.sender,
        "text": edit.text,
        "editedAt": iso(edit.edited_at),
    }
