"""Wire schemas of messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from openwa.kit.schema import CamelModel, StrictCamelModel


class SendOptions(StrictCamelModel):
    send_at: AwareDatetime | None = Field(
        default=None,
        description="ISO 8601 with an offset: hold the message in the queue until then",
        examples=["2026-12-01T09:00:00+07:00"],
    )


class TextMessageCreate(SendOptions):
    chat_id: str = Field(
        min_length=1,
        max_length=128,
        description="Phone number in international form, user address or group address",
        examples=["+62 812-3456-7890"],
    )
    text: str = Field(min_length=1, max_length=65536, examples=["Hello from OpenWA"])
    reply_to: str | None = Field(default=None, max_length=128)
    mentions: list[str] | None = Field(default=None, max_length=256)


class Message(CamelModel):
    id: str = Field(description="WhatsApp's message id", examples=["3EB0A1B2C3D4E5F6A7B8C9D0"])
    session_id: str
    chat_id: str
    from_me: bool
    from_: str | None = Field(alias="from")
    type: str
    text: str | None = None
    reply_to: str | None = None
    mentions: list[str] | None = None
    status: str = Field(
        description="pending, sent, delivered, read, played, failed, cancelled; received (inbound)"
    )
    error: str | None = None
    send_at: datetime | None = None
    timestamp: datetime
    created_at: datetime
    updated_at: datetime


class MockInbound(StrictCamelModel):
    from_: str = Field(alias="from", min_length=1, max_length=128, examples=["+1 555 0100 200"])
    text: str | None = Field(default=None, max_length=65536)
    type: str = Field(default="text", pattern="^[a-z]{1,16}$")
    media: dict[str, Any] | None = None


class MockInboundResult(CamelModel):
    id: str


class Transmission(CamelModel):
    message_id: str
    chat_id: str
    type: str
    content: dict[str, Any]
    at: datetime
