"""Wire schemas of chats."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from openwa.kit.schema import CamelModel, StrictCamelModel
from openwa.messages.schemas import Message

CHAT_ID_EXAMPLE = "6281234567890@s.whatsapp.net"
PresenceState = Literal["typing", "recording", "paused"]


class Chat(CamelModel):
    id: str = Field(description="The chat's canonical address", examples=[CHAT_ID_EXAMPLE])
    name: str | None = Field(
        description="The contact's saved name or push name, when known", examples=["Budi"]
    )
    is_group: bool = Field(examples=[False])
    last_message: Message = Field(description="The chat's newest stored message")
    unread_count: int = Field(
        ge=0, description="Inbound messages not yet marked read", examples=[2]
    )
    last_activity_at: datetime = Field(
        description="Time of the newest stored message", examples=["2026-11-26T10:00:00.000Z"]
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": CHAT_ID_EXAMPLE,
                    "name": "Budi",
                    "isGroup": False,
                    "lastMessage": {
                        "id": "3EB0A1B2C3D4E5F6A7B8C9D0",
                        "sessionId": "ses_01JD8X0000000000000000000A",
                        "chatId": CHAT_ID_EXAMPLE,
                        "fromMe": False,
                        "from": CHAT_ID_EXAMPLE,
                        "type": "text",
                        "text": "Is the order on its way?",
                        "status": "received",
                        "timestamp": "2026-11-26T10:00:00.000Z",
                        "createdAt": "2026-11-26T10:00:00.120Z",
                        "updatedAt": "2026-11-26T10:00:00.120Z",
                    },
                    "unreadCount": 2,
                    "lastActivityAt": "2026-11-26T10:00:00.000Z",
                }
            ]
        }
    }


class ChatRead(CamelModel):
    chat_id: str = Field(examples=[CHAT_ID_EXAMPLE])
    marked: int = Field(ge=0, description="Inbound messages marked read by this call", examples=[2])


class PresenceUpdate(StrictCamelModel):
    state: PresenceState = Field(
        default="typing",
        description="`typing`, `recording` (a voice note) or `paused` (stop showing either)",
        examples=["typing"],
    )


class Presence(CamelModel):
    chat_id: str = Field(examples=[CHAT_ID_EXAMPLE])
    state: PresenceState = Field(examples=["typing"])
