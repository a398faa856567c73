"""`POST /mock/report`: what the mock network reports besides messages and acks, as typed
bodies (one per `kind`), each turned into the engine report a real engine would emit.

A test or demo makes the mock say that a contact edited or revoked a message, voted in
a poll, is typing, calls; that the account read a chat on its phone; that a chat's or
group's settings changed; that WhatsApp's server refused a sent message; or that a
message came of a type the engine cannot translate (`unknown`). The core
then applies the report exactly as it applies whatsmeow's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from openwa.engines.base import (
    CallReceived,
    ChatUpdated,
    EngineEvent,
    GroupUpdated,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReadBySelf,
)
from openwa.kit.chat_ids import normalize_chat_id
from openwa.kit.clock import utcnow
from openwa.kit.ids import whatsapp_message_id
from openwa.kit.schema import CamelModel, IsoDatetime, StrictCamelModel

Address = Annotated[str, Field(min_length=1, max_length=128, examples=["+1 555 0100 200"])]
MessageRef = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _FromContact(StrictCamelModel):
    from_: Address = Field(alias="from", description="Who did it (a phone number or address)")
    chat_id: Address | None = Field(
        default=None, description="The chat (a group); by default the direct chat with `from`"
    )

    def chat(self) -> str:
        return normalize_chat_id(self.chat_id or self.from_)

    def sender(self) -> str:
        return normalize_chat_id(self.from_)


class EditReport(_FromContact):
    kind: Literal["edit"]
    message_id: MessageRef
    text: str = Field(min_length=1, max_length=65536)
    history: bool = Field(default=False, description="From a history sync: stored, no event")


class RevokeReport(_FromContact):
    kind: Literal["revoke"]
    message_id: MessageRef
    history: bool = False


class PollVoteReport(_FromContact):
    kind: Literal["poll_vote"]
    poll_id: MessageRef
    selected: list[Annotated[str, Field(max_length=256)]] = Field(max_length=12)


class ReadSelfReport(StrictCamelModel):
    kind: Literal["read_self"]
    chat_id: Address
    message_ids: list[MessageRef] = Field(min_length=1, max_length=500)


class PresenceReport(_FromContact):
    kind: Literal["presence"]
    presence: Literal["available", "unavailable", "composing", "recording", "paused"]
    last_seen: IsoDatetime | None = None


class CallReport(StrictCamelModel):
    kind: Literal["call"]
    from_: Address = Field(alias="from")
    call_id: MessageRef | None = Field(default=None, description="Made up when not given")
    is_video: bool = False
    is_group: bool = False


class ChatUpdateReport(StrictCamelModel):
    kind: Literal["chat_update"]
    chat_id: Address
    ephemeral_seconds: int | None = Field(default=None, ge=0, le=31_536_000)
    archived: bool | None = None
    pinned: bool | None = None
    muted: bool | None = None


GroupAction = Literal[
    "subject",
    "description",
    "settings",
    "ephemeral",
    "invite_link",
    "join",
    "leave",
    "add",
    "remove",
    "promote",
    "demote",
    "approval",
    "delete",
    "link",
    "unlink",
]


class GroupUpdateReport(StrictCamelModel):
    kind: Literal["group_update"]
    group_id: Address
    action: GroupAction
    participants: list[Address] = Field(default_factory=list, max_length=256)
    by: Address | None = None
    value: str | None = Field(default=None, max_length=2048)


class ServerErrorReport(StrictCamelModel):
    kind: Literal["server_error"]
    message_id: MessageRef = Field(description="One of the session's sent messages")
    chat_id: Address | None = None


class UnknownReport(StrictCamelModel):
    kind: Literal["unknown"]
    from_: Address = Field(alias="from")
    raw_type: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="The engine's own name of the type",
        examples=["someNewMessage"],
    )


MockReport = Annotated[
    EditReport
    | RevokeReport
    | PollVoteReport
    | ReadSelfReport
    | PresenceReport
    | CallReport
    | ChatUpdateReport
    | GroupUpdateReport
    | ServerErrorReport
    | UnknownReport,
    Field(discriminator="kind"),
]


class MockReportResult(CamelModel):
    kind: str = Field(description="The report's kind: it has been handed to the core")
    id: str | None = Field(default=None, description="The id of an `unknown` message")


def engine_report(body: MockReport) -> EngineEvent:
    """The engine report the mock emits for `body` (addresses normalised; a bad one is
    `InvalidChatId`)."""
    match body:
        case EditReport():
            return MessageEdited(
                body.message_id,
                body.chat(),
                body.sender(),
                body.text,
                utcnow(),
                history=body.history,
            )
        case RevokeReport():
            return MessageRevoked(body.message_id, body.chat(), body.sender(), history=body.history)
        case PollVoteReport():
            return PollVoted(body.poll_id, body.chat(), body.sender(), list(body.selected))
        case ReadSelfReport():
            return ReadBySelf(normalize_chat_id(body.chat_id), list(body.message_ids))
        case PresenceReport():
            return PresenceUpdated(body.chat(), body.sender(), body.presence, body.last_seen)
        case CallReport():
            return CallReceived(
                body.call_id or whatsapp_message_id(),
                normalize_chat_id(body.from_),
                body.is_video,
                body.is_group,
                utcnow(),
            )
        case ChatUpdateReport():
            return ChatUpdated(
                normalize_chat_id(body.chat_id),
                body.ephemeral_seconds,
                body.archived,
                body.pinned,
                body.muted,
            )
        case GroupUpdateReport():
            return GroupUpdated(
                normalize_chat_id(body.group_id),
                body.action,
                [normalize_chat_id(p) for p in body.participants],
                normalize_chat_id(body.by) if body.by else None,
                body.value,
            )
        case ServerErrorReport():
            chat = normalize_chat_id(body.chat_id) if body.chat_id else ""
            return MessageAck(body.message_id, chat, "failed")
        case UnknownReport():
            sender = normalize_chat_id(body.from_)
            return MessageReceived(
                whatsapp_message_id(),
                sender,
                sender,
                "unknown",
                {},
                utcnow(),
                raw_type=body.raw_type,
            )
