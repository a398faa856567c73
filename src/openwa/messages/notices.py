"""Engine reports that only announce something: presence, calls, chat settings, group
changes. They change no stored message, so each becomes one event and nothing else.

Chats have no table of their own (a chat is its messages), so a chat's settings
(`chat.update`: disappearing timer, archived, pinned, muted) are announced, not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openwa.engines.base import CallReceived, ChatUpdated, GroupUpdated, PresenceUpdated
from openwa.events.types import CALL_RECEIVED, CHAT_UPDATE, GROUP_UPDATE, PRESENCE_UPDATE
from openwa.kit.clock import iso
from openwa.kit.fields import present

Notice = PresenceUpdated | CallReceived | ChatUpdated | GroupUpdated


@dataclass(frozen=True, slots=True)
class Announcement:
    """An event to log, and the chat it concerns (for the session's `ignore` flags)."""

    event: str
    data: dict[str, Any]
    chat_id: str


def announcement(report: Notice) -> Announcement:
    data: dict[str, Any]
    match report:
        case PresenceUpdated():
            data = {
                "chatId": report.chat_id,
                "from": report.sender,
                "presence": report.presence,
                "lastSeen": iso(report.last_seen) if report.last_seen else None,
            }
            return Announcement(PRESENCE_UPDATE, present(data), report.chat_id)
        case CallReceived():
            data = {
                "callId": report.call_id,
                "from": report.sender,
                "isVideo": report.is_video,
                "isGroup": report.is_group,
                "timestamp": iso(report.timestamp),
            }
            return Announcement(CALL_RECEIVED, data, report.sender)
        case ChatUpdated():
            data = {
                "chatId": report.chat_id,
                "ephemeralSeconds": report.ephemeral_seconds,
                "archived": report.archived,
                "pinned": report.pinned,
                "muted": report.muted,
            }
            return Announcement(CHAT_UPDATE, present(data), report.chat_id)
        case GroupUpdated():
            data = {
                "groupId": report.group_id,
                "action": report.action,
                "participants": report.participants,
                "by": report.by,
            }
            if report.value is not None:
                data["value"] = report.value
            return Announcement(GROUP_UPDATE, data, report.group_id)
