"""A group's metadata as the bridge returns it (Baileys' `GroupMetadata`, or
whatsapp-web.js' `groupMetadata`, which names the same things differently)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from openwa.engines.base import GroupInfo

# whatsapp-web.js' ids ({server, user, _serialized}, `@c.us`) as well as Baileys'.
from openwa.engines.bridge.webjs import chat_id


def _role(participant: dict[str, Any]) -> str:
    admin = participant.get("admin")
    if admin == "superadmin" or participant.get("isSuperAdmin"):
        return "superadmin"
    if admin == "admin" or participant.get("isAdmin"):
        return "admin"
    return "member"


def group_info(data: dict[str, Any]) -> GroupInfo:
    participants = [
        {"id": who, "role": _role(p)}
        for p in data.get("participants") or []
        if (who := chat_id(p.get("id"))) is not None
    ]
    created = data.get("creation")
    return GroupInfo(
        id=chat_id(data.get("id")) or "",
        subject=str(data.get("subject") or ""),
        description=data.get("desc") or None,
        owner=chat_id(data.get("owner")),
        participants=participants,
        settings={
            "announce": bool(data.get("announce")),
            "restrict": bool(data.get("restrict")),
        },
        created_at=datetime.fromtimestamp(int(created), UTC) if created else None,
    )
