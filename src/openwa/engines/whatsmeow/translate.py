"""Translation between neonize's protobuf events and messages and our engine port.

Pure functions, no network and no client: the tests build neonize's own objects and
check what comes out, and our sends are built here up to the upload step (the upload
itself needs WhatsApp's media servers, so the worker does it and hands us the result).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from neonize.builder import build_revoke
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.utils.enum import MediaType

from openwa.engines.base import (
    EngineEvent,
    GroupInfo,
    GroupUpdated,
    MessageAck,
    MessageReceived,
    MessageRevoked,
    OutgoingMessage,
    ReactionReceived,
)
from openwa.engines.content import (
    Audio,
    Contacts,
    Image,
    Location,
    Media,
    Reaction,
    Sticker,
    Text,
    Video,
    Voice,
)
from openwa.engines.whatsmeow.media_details import MediaDetails
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX

USER_SERVER = USER_SUFFIX[1:]

# ---------------------------------------------------------------------------------------
# Addresses


def chat_id_of(jid: Any) -> str | None:
    """Our chat id of a neonize JID: `user@server`, without the device part."""
    if not jid.User and not jid.Server:
        return None
    if not jid.User:
        return str(jid.Server)
    return f"{jid.User}@{jid.Server}"


def jid_of(chat_id: str) -> Any:
    """The neonize JID of one of our chat ids (`123@s.whatsapp.net`, `1-2@g.us`, ...)."""
    user, _, server = chat_id.partition("@")
    # RawAgent is a required field: neonize serializes every JID it is given.
    return neonize.JID(User=user, Server=server or USER_SERVER, Device=0, Integrator=0, RawAgent=0)


# ---------------------------------------------------------------------------------------
# Inbound messages


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Media a message points at; the worker downloads it (that needs the network)."""

    mimetype: str
    size: int
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    event: EngineEvent
    media: MediaRef | None = None


# Wrappers whose `message` field holds the real content.
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
# Content that carries nothing a user sent (keys, sync notices): not a message for us.
_PLUMBING = ("protocolMessage", "senderKeyDistributionMessage", "messageContextInfo")
_MEDIA_FIELDS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
_WAID = re.compile(r"waid=(\d+)")


def unwrap(message: Any) -> Any:
    for _ in range(4):
        for name in _WRAPPERS:
            if message.HasField(name):
                message = getattr(message, name).message
                break
        else:
            return message
    return message


def _context(content: dict[str, Any], context: Any) -> None:
    if context.stanzaID:
        content["replyTo"] = context.stanzaID
    if len(context.mentionedJID):
        content["mentions"] = list(context.mentionedJID)


def _card(contact: Any) -> dict[str, Any]:
    card: dict[str, Any] = {"name": contact.displayName, "vcard": contact.vcard}
    found = _WAID.search(contact.vcard or "")
    if found:
        card["phoneNumber"] = found.group(1)
    return card


def _timestamp(value: int, *, milliseconds: bool) -> datetime:
    # neonize reports live messages in Unix milliseconds, history sync in seconds;
    # 0 means "not given".
    if not value:
        return datetime.now(UTC)
    return datetime.fromtimestamp(value / 1000 if milliseconds else value, UTC)


def _content(message: Any) -> tuple[str, dict[str, Any], MediaRef | None] | None:
    """(type, content, media) of a WhatsApp message, None for plumbing."""
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        content: dict[str, Any] = {"text": ext.text}
        _context(content, ext.contextInfo)
        return "text", content, None
    if message.conversation:
        return "text", {"text": message.conversation}, None
    for name, kind in _MEDIA_FIELDS.items():
        if message.HasField(name):
            media = getattr(message, name)
            content = {}
            if getattr(media, "caption", ""):
                content["caption"] = media.caption
            _context(content, media.contextInfo)
            if kind == "audio" and media.PTT:
                kind = "voice"
            filename = media.fileName if kind == "document" and media.fileName else None
            ref = MediaRef(media.mimetype or "application/octet-stream", media.fileLength, filename)
            return kind, content, ref
    if message.HasField("locationMessage"):
        loc = message.locationMessage
        location: dict[str, Any] = {
            "latitude": loc.degreesLatitude,
            "longitude": loc.degreesLongitude,
        }
        if loc.name:
            location["name"] = loc.name
        if loc.address:
            location["address"] = loc.address
        return "location", {"location": location}, None
    if message.HasField("contactMessage"):
        return "contacts", {"contacts": [_card(message.contactMessage)]}, None
    if message.HasField("contactsArrayMessage"):
        cards = [_card(c) for c in message.contactsArrayMessage.contacts]
        return "contacts", {"contacts": cards}, None
    present = [field.name for field, _ in message.ListFields() if field.name not in _PLUMBING]
    if not present:
        return None
    return "unknown", {"whatsappType": present[0]}, None


def message_event(
    info: Any,
    message: Any,
    *,
    chat: str | None = None,
    sender: str | None = None,
    history: bool = False,
) -> Inbound | None:
    """Our event for one WhatsApp message: a message, a reaction or a revoke."""
    source = info.MessageSource
    chat_id = chat or chat_id_of(source.Chat)
    if chat_id is None:
        return None
    from_me = bool(source.IsFromMe)
    sender_id = sender or chat_id_of(source.Sender)
    message = unwrap(message)
    if message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        return Inbound(ReactionReceived(reaction.key.ID, chat_id, sender_id, reaction.text))
    if message.HasField("protocolMessage"):
        protocol = message.protocolMessage
        if protocol.type == wa.ProtocolMessage.REVOKE and protocol.key.ID:
            return Inbound(MessageRevoked(protocol.key.ID, chat_id, sender_id))
        return None
    parts = _content(message)
    if parts is None:
        return None
    kind, content, media = parts
    event = MessageReceived(
        id=info.ID,
        chat_id=chat_id,
        sender=sender_id,
        type=kind,
        content=content,
        timestamp=_timestamp(info.Timestamp, milliseconds=not history),
        from_me=from_me,
        push_name=info.Pushname or None,
    )
    return Inbound(event, media)


def inbound_message(event: Any) -> Inbound | None:
    """A neonize `MessageEv`."""
    return message_event(event.Info, event.Message)


_RECEIPTS = {
    neonize.Receipt.DELIVERED: "delivered",
    neonize.Receipt.READ: "read",
    neonize.Receipt.PLAYED: "played",
}


def receipt_acks(event: Any) -> list[MessageAck]:
    """Acks for our messages from a neonize `ReceiptEv` (others' receipts are ignored)."""
    status = _RECEIPTS.get(event.Type)
    chat_id = chat_id_of(event.MessageSource.Chat)
    if status is None or chat_id is None:
        return []
    return [MessageAck(message_id, chat_id, status) for message_id in event.MessageIDs]


# ---------------------------------------------------------------------------------------
# History sync


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    messages: list[Inbound]
    # chat id -> name, from conversations and push names
    names: dict[str, str]


def history_batch(event: Any) -> HistoryBatch:
    """Messages and names from a neonize `HistorySyncEv` (one chunk of many)."""
    data = event.Data
    names: dict[str, str] = {}
    for pushname in data.pushnames:
        if pushname.ID and pushname.pushname:
            names[pushname.ID] = pushname.pushname
    messages: list[Inbound] = []
    for conversation in data.conversations:
        chat_id = conversation.ID
        if not chat_id:
            continue
        if conversation.name and chat_id.endswith(GROUP_SUFFIX):
            names[chat_id] = conversation.name
        for item in conversation.messages:
            web = item.message
            key = web.key
            info = neonize.MessageInfo(
                MessageSource=neonize.MessageSource(IsFromMe=key.fromMe),
                ID=key.ID,
                Timestamp=web.messageTimestamp,
                Pushname=web.pushName,
            )
            sender = None if key.fromMe else (key.participant or web.participant or chat_id)
            translated = message_event(info, web.message, chat=chat_id, sender=sender, history=True)
            if translated is not None and isinstance(translated.event, MessageReceived):
                messages.append(translated)
    return HistoryBatch(messages, names)


# ---------------------------------------------------------------------------------------
# Groups


def _jids(jids: Any) -> list[str]:
    return [chat_id for chat_id in (chat_id_of(j) for j in jids) if chat_id]


def group_updates(event: Any) -> list[GroupUpdated]:
    """Our `group.update`s from a neonize `GroupInfoEv` (one event may hold several)."""
    group_id = chat_id_of(event.JID)
    if group_id is None:
        return []
    by = chat_id_of(event.Sender)
    updates: list[GroupUpdated] = []
    if event.HasField("Name"):
        updates.append(GroupUpdated(group_id, "subject", by=by))
    if event.HasField("Topic"):
        updates.append(GroupUpdated(group_id, "description", by=by))
    if event.HasField("Locked") or event.HasField("Announce"):
        updates.append(GroupUpdated(group_id, "settings", by=by))
    for field, action in (
        ("Join", "add"),
        ("Leave", "remove"),
        ("Promote", "promote"),
        ("Demote", "demote"),
    ):
        participants = _jids(getattr(event, field))
        if participants:
            updates.append(GroupUpdated(group_id, action, participants, by=by))
    return updates


def joined_group(event: Any) -> GroupUpdated | None:
    """A neonize `JoinedGroupEv`: we were added to (or created) a group."""
    group_id = chat_id_of(event.GroupInfo.JID)
    if group_id is None:
        return None
    action = "created" if event.CreateKey else "join"
    return GroupUpdated(group_id, action, by=chat_id_of(event.Sender))


def _role(participant: Any) -> str:
    if participant.IsSuperAdmin:
        return "superadmin"
    return "admin" if participant.IsAdmin else "member"


# WhatsApp's per-participant answer codes to a membership change (whatsmeow passes the
# `error` attribute through as `GroupParticipant.Error`): 404 no such account (or, for a
# change to someone, no such member), 409 already in the group, 403 their privacy
# settings refuse, 408 they left recently and cannot be added back yet, 500 full group.
_NOT_ALLOWED_CODES = frozenset({403, 408, 500})


def participant_status(action: str, code: int) -> str:
    """The contract's word for one participant's result; an unknown code keeps its
    number (`error_<code>`) rather than being guessed at."""
    if not code or code == 200:
        return "ok"
    if code == 404:
        return "not_found" if action == "add" else "not_member"
    if code == 409:
        return "already_member"
    if code in _NOT_ALLOWED_CODES:
        return "not_allowed"
    return f"error_{code}"


def group_info(info: Any) -> GroupInfo:
    created = datetime.fromtimestamp(info.GroupCreated, UTC) if info.GroupCreated else None
    return GroupInfo(
        id=chat_id_of(info.JID) or "",
        subject=info.GroupName.Name,
        description=info.GroupTopic.Topic or None,
        owner=chat_id_of(info.OwnerJID),
        participants=[{"id": chat_id_of(p.JID) or "", "role": _role(p)} for p in info.Participants],
        settings={
            "announce": bool(info.GroupAnnounce.IsAnnounce),
            "locked": bool(info.GroupLocked.isLocked),
        },
        created_at=created,
    )


# ---------------------------------------------------------------------------------------
# Outbound messages

MEDIA_TYPES = {
    "image": MediaType.MediaImage,
    "sticker": MediaType.MediaImage,
    "video": MediaType.MediaVideo,
    "audio": MediaType.MediaAudio,
    "voice": MediaType.MediaAudio,
    "document": MediaType.MediaDocument,
}


def _context_info(content: Text | Media) -> Any | None:
    mentions = content.mentions if isinstance(content, Text) else ()
    reply = content.reply_to
    if not mentions and reply is None:
        return None
    context = wa.ContextInfo(mentionedJID=list(mentions))
    if reply is not None:
        context.stanzaID = reply.id
        context.quotedMessage.CopyFrom(wa.Message(conversation=reply.text or ""))
        if reply.sender:
            context.participant = reply.sender
    return context


def text_message(content: Text) -> Any:
    context = _context_info(content)
    if context is None:
        return wa.Message(conversation=content.text)
    return wa.Message(
        extendedTextMessage=wa.ExtendedTextMessage(text=content.text, contextInfo=context)
    )


def _known(**fields: Any) -> dict[str, Any]:
    """The fields that have a value (protobuf takes no None)."""
    return {name: value for name, value in fields.items() if value is not None}


def media_message(content: Media, upload: Any, details: MediaDetails | None = None) -> Any:
    """The message for media already uploaded (`upload`: neonize's `UploadResponse`),
    with what WhatsApp shows of it before a download (`details`, where known)."""
    shown = details or MediaDetails()
    size = {"width": shown.width, "height": shown.height}
    thumbnail = {"JPEGThumbnail": shown.thumbnail}
    media = content.media
    common: dict[str, Any] = {
        "URL": upload.url,
        "directPath": upload.DirectPath,
        "mediaKey": upload.MediaKey,
        "fileEncSHA256": upload.FileEncSHA256,
        "fileSHA256": upload.FileSHA256,
        "fileLength": upload.FileLength,
        "mimetype": media.mimetype,
    }
    context = _context_info(content)
    if context is not None:
        common["contextInfo"] = context
    caption = content.caption
    match content:
        case Image():
            image = _known(caption=caption, **size, **thumbnail, **common)
            return wa.Message(imageMessage=wa.ImageMessage(**image))
        case Video():
            video = _known(caption=caption, seconds=shown.seconds, **size, **thumbnail, **common)
            return wa.Message(videoMessage=wa.VideoMessage(**video))
        case Audio() | Voice():
            voice = isinstance(content, Voice)
            audio = _known(PTT=voice, seconds=shown.seconds, waveform=shown.waveform, **common)
            return wa.Message(audioMessage=wa.AudioMessage(**audio))
        case Sticker():
            return wa.Message(stickerMessage=wa.StickerMessage(**_known(**size, **common)))
    filename = media.filename or "file"
    return wa.Message(
        documentMessage=wa.DocumentMessage(
            caption=caption, fileName=filename, title=filename, **common
        )
    )


def location_message(content: Location) -> Any:
    return wa.Message(
        locationMessage=wa.LocationMessage(
            degreesLatitude=content.latitude,
            degreesLongitude=content.longitude,
            name=content.name,
            address=content.address,
        )
    )


def contacts_message(content: Contacts) -> Any:
    messages = [wa.ContactMessage(displayName=c.name, vcard=c.vcard) for c in content.cards]
    if len(messages) == 1:
        return wa.Message(contactMessage=messages[0])
    return wa.Message(
        contactsArrayMessage=wa.ContactsArrayMessage(
            displayName=f"{len(messages)} contacts", contacts=messages
        )
    )


def reaction_message(chat_id: str, content: Reaction, *, now_ms: int) -> Any:
    """A reaction to `content.message_id`; its `target` says whose message that is."""
    target = content.target
    from_me = target is not None and target.from_me
    key = MessageKey(remoteJID=chat_id, fromMe=from_me, ID=content.message_id)
    if not from_me and chat_id.endswith(GROUP_SUFFIX) and target is not None and target.sender:
        key.participant = target.sender
    return wa.Message(
        reactionMessage=wa.ReactionMessage(key=key, text=content.emoji, senderTimestampMS=now_ms)
    )


def revoke_message(chat_id: str, message_id: str, me: str) -> Any:
    """Revoke one of our own messages for everyone."""
    return build_revoke(jid_of(chat_id), jid_of(me), message_id, jid_of(me))


def outgoing_message(
    message: OutgoingMessage,
    *,
    upload: Any = None,
    details: MediaDetails | None = None,
    now_ms: int = 0,
) -> Any:
    """The WhatsApp message for one of our sends (media: after `upload`)."""
    match message.content:
        case Text() as text:
            return text_message(text)
        case Location() as location:
            return location_message(location)
        case Contacts() as contacts:
            return contacts_message(contacts)
        case Reaction() as reaction:
            return reaction_message(message.chat_id, reaction, now_ms=now_ms)
        case Media() as media:
            return media_message(media, upload, details or MediaDetails())
    raise ValueError(f"message type {message.type!r} cannot be sent")
