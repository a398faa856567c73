"""What an outgoing message carries, one frozen type per kind of send.

Engines match on the class instead of reading keys out of a dict, so a field that one
side writes and the other never reads (or reads under another name) is a type error,
not a message that silently goes out without its quote. The stored message row keeps
its JSON (`MessageRow.content`); `from_stored` and `to_json` convert at the edge of the
engine port, and `to_json` is also the form that crosses a process boundary (the
whatsmeow worker) and the mock network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Reply:
    """The message a send quotes, named as the engine knows it (its id where it gave one).

    `text` and `sender` are what WhatsApp shows in the quote; the sender fills them in
    from the quoted message before handing the send to the engine."""

    id: str
    text: str | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class MediaFile:
    """Media in our storage, readable by engines through the context's `MediaReader`."""

    key: str
    mimetype: str
    size: int
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    kind: ClassVar[str] = "text"

    text: str
    reply_to: Reply | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Media:
    """A media send; the subclass says which kind (and so how WhatsApp shows it)."""

    kind: ClassVar[str] = "media"

    media: MediaFile
    caption: str | None = None
    reply_to: Reply | None = None


@dataclass(frozen=True, slots=True)
class Image(Media):
    """Shown inline, with its caption."""

    kind: ClassVar[str] = "image"


@dataclass(frozen=True, slots=True)
class Video(Media):
    """Played inline, with its caption."""

    kind: ClassVar[str] = "video"


@dataclass(frozen=True, slots=True)
class Audio(Media):
    """An audio file (a player, no caption); not a voice note."""

    kind: ClassVar[str] = "audio"


@dataclass(frozen=True, slots=True)
class Voice(Media):
    """A voice note (WhatsApp's push-to-talk audio, OGG/Opus)."""

    kind: ClassVar[str] = "voice"


@dataclass(frozen=True, slots=True)
class Document(Media):
    """A file to download, named by its `filename`, with a caption."""

    kind: ClassVar[str] = "document"


@dataclass(frozen=True, slots=True)
class Sticker(Media):
    """A WebP sticker; WhatsApp shows no caption with it."""

    kind: ClassVar[str] = "sticker"


@dataclass(frozen=True, slots=True)
class Location:
    kind: ClassVar[str] = "location"

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class ContactCard:
    name: str
    phone_number: str
    vcard: str


@dataclass(frozen=True, slots=True)
class Contacts:
    kind: ClassVar[str] = "contacts"

    cards: tuple[ContactCard, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """Whose message a reaction is for: WhatsApp's key for it names that (and, in
    groups, the participant who wrote it). Filled in by the sender from the stored
    target; None when the target is not stored."""

    from_me: bool
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction to `message_id` (an empty `emoji` removes it)."""

    kind: ClassVar[str] = "reaction"

    message_id: str
    emoji: str
    target: Target | None = None


Content = Text | Image | Video | Audio | Voice | Document | Sticker | Location | Contacts | Reaction

MediaContent = Image | Video | Audio | Voice | Document | Sticker
MEDIA_KINDS: dict[str, type[MediaContent]] = {
    "image": Image,
    "video": Video,
    "audio": Audio,
    "voice": Voice,
    "document": Document,
    "sticker": Sticker,
}


class UnknownContent(ValueError):
    """A stored type no engine can send (a row written by something else)."""


def _reply(data: dict[str, Any]) -> Reply | None:
    target = data.get("replyTo")
    if not target:
        return None
    return Reply(target, data.get("replyToText"), data.get("replyToSender"))


def _media_file(data: dict[str, Any]) -> MediaFile:
    return MediaFile(
        key=data["key"],
        mimetype=data["mimetype"],
        size=int(data.get("size") or 0),
        filename=data.get("filename"),
    )


def from_stored(type_: str, data: dict[str, Any]) -> Content:
    """The typed content of a stored row's `type` and `content` JSON (or of `to_json`)."""
    match type_:
        case "text":
            return Text(data["text"], _reply(data), tuple(data.get("mentions") or ()))
        case "location":
            where = data["location"]
            return Location(
                float(where["latitude"]),
                float(where["longitude"]),
                where.get("name"),
                where.get("address"),
            )
        case "contacts":
            return Contacts(
                tuple(
                    ContactCard(card["name"], card["phoneNumber"], card["vcard"])
                    for card in data["contacts"]
                )
            )
        case "reaction":
            target = None
            if "targetFromMe" in data:
                target = Target(bool(data["targetFromMe"]), data.get("targetSender"))
            return Reaction(data["messageId"], data.get("emoji") or "", target)
        case kind if kind in MEDIA_KINDS:
            return MEDIA_KINDS[kind](_media_file(data["media"]), data.get("caption"), _reply(data))
    raise UnknownContent(f"message type {type_!r} cannot be sent")


def _reply_json(out: dict[str, Any], reply: Reply | None) -> None:
    if reply is None:
        return
    out["replyTo"] = reply.id
    if reply.text is not None:
        out["replyToText"] = reply.text
    if reply.sender:
        out["replyToSender"] = reply.sender


def media_json(media: MediaFile) -> dict[str, Any]:
    """A media file as stored in a row's `content["media"]`."""
    out: dict[str, Any] = {"key": media.key, "mimetype": media.mimetype, "size": media.size}
    if media.filename:
        out["filename"] = media.filename
    return out


def to_json(content: Content) -> dict[str, Any]:
    """The JSON of `content`: the stored row's form (keys only where set), plus what the
    sender filled in for the engine (a quote's words and sender, a reaction's target)."""
    out: dict[str, Any] = {}
    match content:
        case Text():
            out["text"] = content.text
            _reply_json(out, content.reply_to)
            if content.mentions:
                out["mentions"] = list(content.mentions)
        case Media():
            if content.caption:
                out["caption"] = content.caption
            _reply_json(out, content.reply_to)
            out["media"] = media_json(content.media)
        case Location():
            where: dict[str, Any] = {"latitude": content.latitude, "longitude": content.longitude}
            if content.name is not None:
                where["name"] = content.name
            if content.address is not None:
                where["address"] = content.address
            out["location"] = where
        case Contacts():
            out["contacts"] = [
                {"name": c.name, "phoneNumber": c.phone_number, "vcard": c.vcard}
                for c in content.cards
            ]
        case Reaction():
            out["messageId"] = content.message_id
            out["emoji"] = content.emoji
            if content.target is not None:
                out["targetFromMe"] = content.target.from_me
                out["targetSender"] = content.target.sender
    return out


def reply_of(content: Content) -> Reply | None:
    """The message `content` quotes, for the kinds that can quote one."""
    return content.reply_to if isinstance(content, Text | Media) else None
