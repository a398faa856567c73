"""The wire mapping of messages: a stored row as the API answers it and as events carry it.

One place decides what clients see of a message (never our storage keys), and its media
link comes from `MediaLinks` for both, so REST and events cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from openwa.db.models import MessageRow
from openwa.media.links import MediaLinks
from openwa.messages.schemas import Message


async def to_schema(links: MediaLinks, row: MessageRow) -> Message:
    """The message as REST answers it, its media linked."""
    content = row.content or {}
    reaction = None
    if row.type == "reaction":
        reaction = {"messageId": content.get("messageId"), "emoji": content.get("emoji")}
    return Message(
        id=row.id,
        session_id=row.session_id,
        chat_id=row.chat_id,
        from_me=row.from_me,
        **{"from": row.sender},
        type=row.type,
        text=content.get("text"),
        reply_to=content.get("replyTo"),
        mentions=content.get("mentions"),
        caption=content.get("caption"),
        media=await links.view(row.session_id, row.id, content.get("media")),
        media_error=content.get("mediaError"),
        location=content.get("location"),
        contacts=content.get("contacts"),
        reaction=reaction,
        raw_type=content.get("rawType"),
        revoked=row.revoked_at is not None,
        edits=row.edits or None,
        status=row.status,
        error=row.error,
        error_code=row.error_code,
        send_at=row.send_at,
        timestamp=row.timestamp,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def event_data(links: MediaLinks, row: MessageRow) -> dict[str, Any]:
    """The message as events carry it: the REST form, camelCase, without nulls."""
    message = await to_schema(links, row)
    data: dict[str, Any] = message.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def ack_data(row: MessageRow, status: str, *, by: str | None = None) -> dict[str, Any]:
    """A `message.ack` event's data: `{id, chatId, status, by?}`, and for `failed` the
    message's `error` and `errorCode`."""
    data: dict[str, Any] = {"id": row.id, "chatId": row.chat_id, "status": status}
    if by is not None:
        data["by"] = by
    if status == "failed":
        data["error"] = row.error
        data["errorCode"] = row.error_code
    return data
