"""The wire mapping of messages: a stored row as the API answers it and as events carry it.

One place decides what clients see of a message (never our storage keys), so REST and
events cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from openwa.db.models import MessageRow
from openwa.media.links import MediaLinks
from openwa.messages.schemas import Message


def _media_view(row: MessageRow, media: dict[str, Any] | None) -> dict[str, Any] | None:
    """Media as clients see it: where to download it, never our storage key."""
    if not media:
        return None
    if not media.get("key"):
        return {"deleted": True, "mimetype": media.get("mimetype"), "size": media.get("size")}
    view = {
        "url": f"/api/sessions/{row.session_id}/messages/{row.id}/media",
        "mimetype": media["mimetype"],
        "size": media["size"],
    }
    if media.get("filename"):
        view["filename"] = media["filename"]
    return view


def to_schema(row: MessageRow) -> Message:
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
        media=_media_view(row, content.get("media")),
        media_error=content.get("mediaError"),
        location=content.get("location"),
        contacts=content.get("contacts"),
        reaction=reaction,
        revoked=row.revoked_at is not None,
        status=row.status,
        error=row.error,
        send_at=row.send_at,
        timestamp=row.timestamp,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message_data(row: MessageRow) -> dict[str, Any]:
    """The message as events carry it (camelCase, no nulls), media not yet linked."""
    data: dict[str, Any] = to_schema(row).model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


async def event_data(links: MediaLinks, row: MessageRow) -> dict[str, Any]:
    """The message as events carry it, with its media linked."""
    data = message_data(row)
    media = (row.content or {}).get("media")
    if media:
        data["media"] = await links.describe(row.session_id, row.id, media)
    return data
