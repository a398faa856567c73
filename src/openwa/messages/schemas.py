"""Wire schemas of messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from openwa.kit.schema import CamelModel, IsoDatetime, StrictCamelModel
from openwa.media.types import valid_mimetype

# A WhatsApp LID as engines report it (the mock's control takes them in this form).
LID_PATTERN = r"^[0-9]{1,32}@lid$"


class SendOptions(StrictCamelModel):
    send_at: IsoDatetime | None = Field(
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
    mentions: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=256
    )


MediaType = Literal["image", "video", "audio", "voice", "document", "sticker"]
# The message types of the contract's Events section: what an inbound message may be.
InboundType = Literal[
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "live_location",
    "contacts",
    "reaction",
    "poll",
    "invite",
    "button_reply",
    "pin",
    "undecryptable",
    "unknown",
]


class MediaSource(StrictCamelModel):
    """Exactly one of `url`, or `base64` with its `mimetype`."""

    url: str | None = Field(default=None, max_length=2048, examples=["https://example.com/a.jpg"])
    base64: str | None = Field(default=None, description="The bytes, base64 (or a data: URL)")
    mimetype: str | None = Field(default=None, max_length=128, examples=["image/jpeg"])
    filename: str | None = Field(default=None, max_length=255)

    @field_validator("mimetype")
    @classmethod
    def _media_type(cls, value: str | None) -> str | None:
        # Served back as a Content-Type: CR, LF or NUL here would split the response.
        if value is not None and not valid_mimetype(value):
            raise ValueError("must be a media type such as image/jpeg (RFC 6838)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> MediaSource:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("give either url or base64")
        return self


class MediaMessageCreate(SendOptions):
    chat_id: str = Field(min_length=1, max_length=128, examples=["+62 812-3456-7890"])
    type: MediaType = Field(examples=["image"])
    media: MediaSource
    caption: str | None = Field(default=None, max_length=4096)
    reply_to: str | None = Field(default=None, max_length=128)


class MediaUploadFields(SendOptions):
    """The fields of a `multipart/form-data` media send (with a `file` part)."""

    chat_id: str = Field(min_length=1, max_length=128)
    type: MediaType
    caption: str | None = Field(default=None, max_length=4096)
    reply_to: str | None = Field(default=None, max_length=128)
    filename: str | None = Field(default=None, max_length=255)


class LocationMessageCreate(SendOptions):
    chat_id: str = Field(min_length=1, max_length=128)
    latitude: float = Field(ge=-90, le=90, examples=[-6.2])
    longitude: float = Field(ge=-180, le=180, examples=[106.816666])
    name: str | None = Field(default=None, max_length=256)
    address: str | None = Field(default=None, max_length=1024)


class ContactCard(StrictCamelModel):
    name: str = Field(min_length=1, max_length=256, examples=["Budi Santoso"])
    phone_number: str = Field(min_length=5, max_length=32, examples=["+62 812-3456-7890"])


class ContactMessageCreate(SendOptions):
    chat_id: str = Field(min_length=1, max_length=128)
    contacts: list[ContactCard] = Field(min_length=1, max_length=20)


class ReactionCreate(SendOptions):
    message_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    emoji: str = Field(max_length=16, description="An empty string removes the reaction")


class MessageEdit(CamelModel):
    text: str
    at: datetime


class Message(CamelModel):
    id: str = Field(description="WhatsApp's message id", examples=["3EB0A1B2C3D4E5F6A7B8C9D0"])
    session_id: str
    chat_id: str
    from_me: bool
    from_: str | None = Field(alias="from")
    from_lid: str | None = Field(
        default=None,
        description="The WhatsApp LID behind a phone-number `from`, when known",
        examples=["123456789012345@lid"],
    )
    chat_lid: str | None = Field(
        default=None,
        description="The WhatsApp LID behind a phone-number `chatId`, when known",
        examples=["123456789012345@lid"],
    )
    type: str
    text: str | None = None
    reply_to: str | None = None
    mentions: list[str] | None = None
    caption: str | None = None
    media: dict[str, Any] | None = Field(
        default=None, description="{url, mimetype, size, filename?}: download from url"
    )
    media_error: str | None = Field(
        default=None,
        description="Why an inbound message's media is missing (download failed, old "
        "media from a history sync, which is not fetched, or our storage failed to keep it)",
    )
    location: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] | None = None
    reaction: dict[str, Any] | None = None
    raw_type: str | None = Field(
        default=None,
        description="For type unknown: the engine's own name of what it could not translate",
    )
    revoked: bool = False
    edits: list[MessageEdit] | None = Field(
        default=None,
        description="The texts the message had before each edit, oldest first; `at`: when "
        "the edit replaced it (the current text is `text`, or `caption` for media)",
    )
    status: str = Field(
        description="pending, sent, delivered, read, played, failed, cancelled; received (inbound)"
    )
    error: str | None = None
    error_code: str | None = Field(
        default=None,
        description="Why it failed: ENGINE_ERROR, SESSION_NOT_READY, SEND_OUTCOME_UNKNOWN, SERVER_REFUSED",
    )
    send_at: datetime | None = None
    timestamp: datetime
    created_at: datetime
    updated_at: datetime


class MockInboundResult(CamelModel):
    id: str


class MockLid(StrictCamelModel):
    lid: str = Field(pattern=LID_PATTERN, examples=["123456789012345@lid"])
    phone_number: str = Field(
        min_length=1,
        max_length=128,
        description="Phone number or user address",
        examples=["+1 555 0100 200"],
    )
    push_name: str | None = Field(default=None, max_length=256, examples=["Ann"])


class MockLidResult(CamelModel):
    contact_id: str = Field(examples=["15550100200@s.whatsapp.net"])
    lid: str = Field(examples=["123456789012345@lid"])


class Transmission(CamelModel):
    message_id: str
    chat_id: str
    type: str
    content: dict[str, Any]
    at: datetime


class MockInbound(StrictCamelModel):
    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=128,
        description="The sender: a phone number or user address, a group (the group "
        "writes), or a LID (`...@lid`: the engine could not map it to a phone number)",
        examples=["+1 555 0100 200"],
    )
    from_lid: str | None = Field(
        default=None,
        pattern=LID_PATTERN,
        description="The sender's LID, with a phone-number `from`: as an engine that "
        "mapped the LID reports the message",
        examples=["123456789012345@lid"],
    )
    chat_id: str | None = Field(
        default=None,
        max_length=128,
        description="The group the message arrives in (default: the sender's own chat)",
        examples=["123456789-123456@g.us"],
    )
    text: str | None = Field(default=None, max_length=65536)
    type: InboundType = "text"
    media: MediaSource | None = Field(
        default=None, description="Media that comes with it ({base64, mimetype} or {url})"
    )
