"""Translation between neonize's protobuf events and messages and our engine port.

Pure functions, no network and no client: the tests build neonize's own objects and
check what comes out, and our sends are built here up to the upload step (the upload
itself needs WhatsApp's media servers, so the worker does it and hands us the result).
"""

from __future__ import annotations

import hashlib
import logging
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
    UNDECRYPTABLE,
    ChatUpdated,
    EngineEvent,
    GroupInfo,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    OutgoingMessage,
    PollVoted,
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
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, is_lid, is_number, is_numeric_lid
from openwa.kit.fields import present
from openwa.media.details import MediaDetails

USER_SERVER = USER_SUFFIX[1:]
log = logging.getLogger("openwa.whatsmeow.translate")

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


@dataclass(frozen=True, slots=True)
class Address:
    """Who or where, by phone-number id when WhatsApp gave one; `lid` is the LID behind
    it, set only when both are known (an unmapped LID stays in `id`)."""

    id: str | None
    lid: str | None = None

    @property
    def pair(self) -> tuple[str, str] | None:
        """(phone id, LID) when this address maps one to the other."""
        return (self.id, self.lid) if self.id and self.lid else None


def address(jid: Any, alt: Any = None) -> Address:
    """A JID and the alternative whatsmeow gives next to it (`SenderAlt`, `PhoneNumber`,
    ...): whichever of the two is a LID goes into `lid`, the other is the id. They are
    paired only as a phone number's address and a LID, both of digits (as the bridge
    engines pair them): anything else would map a LID onto a group or a bot."""
    main = chat_id_of(jid)
    other = chat_id_of(alt) if alt is not None else None
    if is_numeric_lid(main) and is_number(other):
        return Address(other, main)
    if is_number(main) and is_numeric_lid(other):
        return Address(main, other)
    return Address(main)


def source_addresses(source: Any) -> tuple[Address, Address]:
    """(chat, sender) of a neonize `MessageSource`, mapped to phone ids where it can.

    A LID-addressed direct chat is named by the other person's LID; its phone number is
    `SenderAlt` when they wrote, `RecipientAlt` when we did."""
    sender = address(source.Sender, source.SenderAlt)
    chat = address(source.Chat)
    if is_lid(chat.id) and not source.IsGroup:
        if source.IsFromMe:
            chat = address(source.Chat, source.RecipientAlt)
        elif sender.lid == chat.id:
            chat = Address(sender.id, sender.lid)
    return chat, sender


def lid_pairs(*addresses: Address) -> list[tuple[str, str]]:
    """The (phone id, LID) pairs among some addresses, each once."""
    pairs: list[tuple[str, str]] = []
    for item in addresses:
        pair = item.pair
        if pair is not None and pair not in pairs:
            pairs.append(pair)
    return pairs


def unix_time(value: int) -> datetime | None:
    """A Unix time neonize gives in seconds or milliseconds (it differs by event)."""
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


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
    # (phone id, LID) pairs the message revealed, for `ContactUpdated`.
    lids: tuple[tuple[str, str], ...] = ()


# Wrappers whose `message` field holds the real content. `editedMessage` wraps a
# `protocolMessage{MESSAGE_EDIT}` (whatsmeow unwraps it live, history sync does not).
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
    "ptvMessage": "video",  # a round video note: a video for us
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# Poll creations by version; V4 is a wrapper of another shape and stays unknown.
POLL_FIELDS = (
    "pollCreationMessage",
    "pollCreationMessageV2",
    "pollCreationMessageV3",
    "pollCreationMessageV5",
    "pollCreationMessageV6",
)
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


def downloadable(message: Any) -> Any:
    """The message to hand whatsmeow's download: unwrapped, and a round video (`ptv`,
    encrypted as any video) as a video, which is what its download knows."""
    message = unwrap(message)
    if message.HasField("ptvMessage"):
        return wa.Message(videoMessage=message.ptvMessage)
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


def timestamp_of(value: int) -> datetime:
    """A message's time: 0 means "not given", and a time out of range is no reason to
    lose the message (both are now)."""
    return unix_time(value) or datetime.now(UTC)


Parts = tuple[str, dict[str, Any], MediaRef | None]


def _media(message: Any) -> Parts | None:
    for name, kind in _MEDIA_FIELDS.items():
        if message.HasField(name):
            media = getattr(message, name)
            content: dict[str, Any] = {}
            if getattr(media, "caption", ""):
                content["caption"] = media.caption
            _context(content, media.contextInfo)
            if kind == "audio" and media.PTT:
                kind = "voice"
            filename = media.fileName if kind == "document" and media.fileName else None
            ref = MediaRef(media.mimetype or "application/octet-stream", media.fileLength, filename)
            return kind, content, ref
    return None


def _location(loc: Any, *, live: bool) -> dict[str, Any]:
    location: dict[str, Any] = {"latitude": loc.degreesLatitude, "longitude": loc.degreesLongitude}
    if live:
        if loc.accuracyInMeters:
            location["accuracyMeters"] = loc.accuracyInMeters
        if loc.speedInMps:
            location["speedMps"] = loc.speedInMps
        if loc.sequenceNumber:
            location["sequence"] = loc.sequenceNumber
        return location
    if loc.name:
        location["name"] = loc.name
    if loc.address:
        location["address"] = loc.address
    return location


def poll_of(message: Any) -> Any | None:
    """The `PollCreationMessage` of a message, whichever version carries it."""
    for name in POLL_FIELDS:
        if message.HasField(name):
            return getattr(message, name)
    return None


def _poll(poll: Any) -> Parts:
    content: dict[str, Any] = {
        "poll": {
            "question": poll.name,
            "options": [option.optionName for option in poll.options],
            "selectableCount": poll.selectableOptionsCount,
        }
    }
    _context(content, poll.contextInfo)
    return "poll", content, None


def _reply(message: Any) -> Parts | None:
    """A tap on a button, list row or template button: `button_reply`, its id and text."""
    if message.HasField("buttonsResponseMessage"):
        reply = message.buttonsResponseMessage
        chosen, text = reply.selectedButtonID, reply.selectedDisplayText
    elif message.HasField("listResponseMessage"):
        reply = message.listResponseMessage
        chosen, text = reply.singleSelectReply.selectedRowID, reply.title
    elif message.HasField("templateButtonReplyMessage"):
        reply = message.templateButtonReplyMessage
        chosen, text = reply.selectedID, reply.selectedDisplayText
    elif message.HasField("interactiveResponseMessage"):
        reply = message.interactiveResponseMessage
        chosen, text = reply.nativeFlowResponseMessage.name, reply.body.text
    else:
        return None
    content: dict[str, Any] = {"text": text, "buttonReply": {"id": chosen, "text": text}}
    _context(content, reply.contextInfo)
    return "button_reply", content, None


def _other(message: Any) -> Parts | None:
    """Live locations, group invites, pins and placeholders."""
    if message.HasField("liveLocationMessage"):
        live = message.liveLocationMessage
        content: dict[str, Any] = {"location": _location(live, live=True)}
        if live.caption:
            content["caption"] = live.caption
        return "live_location", content, None
    if message.HasField("groupInviteMessage"):
        invite = message.groupInviteMessage
        details: dict[str, Any] = {
            "groupId": invite.groupJID,
            "code": invite.inviteCode,
            "groupName": invite.groupName,
        }
        expires = unix_time(invite.inviteExpiration)
        if expires is not None:
            details["expiresAt"] = expires.isoformat()
        content = {"invite": details}
        if invite.caption:
            content["caption"] = invite.caption
        return "invite", content, None
    if message.HasField("pinInChatMessage"):
        pin = message.pinInChatMessage
        pinned = pin.type == wa.PinInChatMessage.PIN_FOR_ALL
        return "pin", {"pin": {"messageId": pin.key.ID, "pinned": pinned}}, None
    if message.HasField("placeholderMessage"):
        # What WhatsApp shows linked devices in place of a message kept from them.
        return UNDECRYPTABLE, {"reason": "placeholder"}, None
    return None


def _content(message: Any) -> Parts | None:
    """(type, content, media) of a WhatsApp message, None for plumbing."""
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        content: dict[str, Any] = {"text": ext.text}
        _context(content, ext.contextInfo)
        return "text", content, None
    if message.conversation:
        return "text", {"text": message.conversation}, None
    media = _media(message)
    if media is not None:
        return media
    if message.HasField("locationMessage"):
        return "location", {"location": _location(message.locationMessage, live=False)}, None
    if message.HasField("contactMessage"):
        return "contacts", {"contacts": [_card(message.contactMessage)]}, None
    if message.HasField("contactsArrayMessage"):
        cards = [_card(c) for c in message.contactsArrayMessage.contacts]
        return "contacts", {"contacts": cards}, None
    poll = poll_of(message)
    if poll is not None:
        return _poll(poll)
    found = _reply(message) or _other(message)
    if found is not None:
        return found
    present = [field.name for field, _ in message.ListFields() if field.name not in _PLUMBING]
    if not present:
        return None
    return "unknown", {}, None


def _raw_type(message: Any) -> str | None:
    present = [field.name for field, _ in message.ListFields() if field.name not in _PLUMBING]
    return present[0] if present else None


def edited_text(message: Any) -> str | None:
    """The new text of an edit: a text's, or a media caption's."""
    message = unwrap(message)
    if message.conversation:
        return str(message.conversation)
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text)
    for name in _MEDIA_FIELDS:
        if message.HasField(name):
            return str(getattr(message, name).caption)
    return None


@dataclass(frozen=True, slots=True)
class Where:
    """A message's chat, sender and time, however neonize gave them."""

    chat: Address
    sender: Address
    from_me: bool
    id: str
    timestamp: datetime
    push_name: str | None
    history: bool = False


def _protocol(protocol: Any, where: Where) -> EngineEvent | None:
    chat_id, sender = where.chat.id or "", where.sender.id
    if protocol.type == wa.ProtocolMessage.REVOKE and protocol.key.ID:
        return MessageRevoked(protocol.key.ID, chat_id, sender, history=where.history)
    if protocol.type == wa.ProtocolMessage.MESSAGE_EDIT and protocol.key.ID:
        text = edited_text(protocol.editedMessage)
        if text is None:
            log.info("edit of %s without text: nothing to report", protocol.key.ID)
            return None
        at = unix_time(protocol.timestampMS) or where.timestamp
        return MessageEdited(
            protocol.key.ID, chat_id, sender, text, at, where.from_me, history=where.history
        )
    if protocol.type == wa.ProtocolMessage.EPHEMERAL_SETTING and not where.history:
        return ChatUpdated(chat_id, ephemeral_seconds=protocol.ephemeralExpiration)
    return None


def translate_message(message: Any, where: Where) -> Inbound | None:
    """Our event for one WhatsApp message: a message, reaction, edit, revoke or chat
    setting; None for what only whatsmeow needs (keys, sync notices) and for votes,
    which only the worker's client can decrypt."""
    chat_id = where.chat.id
    if chat_id is None:
        return None
    lids = tuple(lid_pairs(where.chat, where.sender))
    sender_id = where.sender.id
    message = unwrap(message)
    if message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        event: EngineEvent = ReactionReceived(reaction.key.ID, chat_id, sender_id, reaction.text)
        return Inbound(event, lids=lids)
    if message.HasField("encReactionMessage"):
        # neonize 0.5.2 offers no way to decrypt it (whatsmeow's DecryptReaction).
        target = message.encReactionMessage.targetMessageKey.ID
        log.info(
            "encrypted reaction to %s in %s skipped: neonize cannot decrypt it", target, chat_id
        )
        return None
    if message.HasField("pollUpdateMessage"):
        return None
    if message.HasField("protocolMessage"):
        found = _protocol(message.protocolMessage, where)
        return None if found is None else Inbound(found, lids=lids)
    parts = _content(message)
    if parts is None:
        return None
    kind, content, media = parts
    event = MessageReceived(
        id=where.id,
        chat_id=chat_id,
        sender=sender_id,
        type=kind,
        content=content,
        timestamp=where.timestamp,
        from_me=where.from_me,
        push_name=where.push_name,
        history=where.history,
        sender_lid=where.sender.lid,
        chat_lid=where.chat.lid,
        raw_type=_raw_type(message) if kind == "unknown" else None,
    )
    return Inbound(event, media, lids)


def _where(info: Any) -> Where:
    """Where a live message (neonize's `MessageInfo`) belongs."""
    chat, sender = source_addresses(info.MessageSource)
    return Where(
        chat=chat,
        sender=sender,
        from_me=bool(info.MessageSource.IsFromMe),
        id=info.ID,
        timestamp=timestamp_of(info.Timestamp),
        push_name=info.Pushname or None,
    )


def inbound_message(event: Any) -> Inbound | None:
    """A neonize `MessageEv`."""
    return translate_message(event.Message, _where(event.Info))


def undecryptable(event: Any) -> Inbound | None:
    """A neonize `UndecryptableMessageEv`: a message we cannot read (yet; whatsmeow asks
    the sender's phone to send it again). Hidden ones (reactions, edits: WhatsApp shows
    nothing for them) are skipped."""
    if event.DecryptFailMode == neonize.UndecryptableMessage.DECRYPT_FAIL_HIDE:
        return None
    where = _where(event.Info)
    if where.chat.id is None:
        return None
    reason = "unavailable" if event.IsUnavailable else "decryption_failed"
    received = MessageReceived(
        id=where.id,
        chat_id=where.chat.id,
        sender=where.sender.id,
        type=UNDECRYPTABLE,
        content={"reason": reason},
        timestamp=where.timestamp,
        from_me=where.from_me,
        push_name=where.push_name,
        sender_lid=where.sender.lid,
        chat_lid=where.chat.lid,
    )
    return Inbound(received, lids=tuple(lid_pairs(where.chat, where.sender)))


# ---------------------------------------------------------------------------------------
# Poll votes (decrypted by the worker's client; the option names are matched here)


@dataclass(frozen=True, slots=True)
class VoteRef:
    """A vote as it arrives: encrypted, on poll `poll_id`."""

    poll_id: str
    chat: Address
    sender: Address


def vote_ref(event: Any) -> VoteRef | None:
    """The poll a `MessageEv` votes on, when it is a vote."""
    message = unwrap(event.Message)
    if not message.HasField("pollUpdateMessage"):
        return None
    poll_id = message.pollUpdateMessage.pollCreationMessageKey.ID
    chat, sender = source_addresses(event.Info.MessageSource)
    if not poll_id or chat.id is None:
        return None
    return VoteRef(poll_id, chat, sender)


def option_hash(name: str) -> bytes:
    """How a vote names an option: the SHA-256 of its name."""
    return hashlib.sha256(name.encode()).digest()


def poll_options(message: Any) -> dict[bytes, str] | None:
    """Option names by their hash, for a message that creates a poll."""
    poll = poll_of(unwrap(message))
    if poll is None:
        return None
    return {option_hash(o.optionName): o.optionName for o in poll.options}


def poll_vote(ref: VoteRef, selected: Any, options: dict[bytes, str] | None) -> PollVoted | None:
    """The vote with its options named (`selected`: the hashes of a decrypted
    `PollVoteMessage`); None when a hash names no option of the poll we know. A poll
    this worker has not seen (it restarted since) passes the hashes on, for the core to
    name from the poll it stored."""
    chat_id = ref.chat.id or ""
    if options is None:
        hashes = [bytes(digest).hex() for digest in selected]
        return PollVoted(ref.poll_id, chat_id, ref.sender.id, [], option_hashes=hashes)
    names: list[str] = []
    for digest in selected:
        name = options.get(bytes(digest))
        if name is None:
            return None
        names.append(name)
    return PollVoted(ref.poll_id, chat_id, ref.sender.id, names)


# ---------------------------------------------------------------------------------------
# Groups


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


def participant_address(participant: Any) -> Address:
    """A group member by phone id, with the LID, from `JID`, `PhoneNumber` and `LID`."""
    found = address(participant.JID, participant.PhoneNumber)
    if found.lid is None and participant.HasField("LID"):
        found = address(participant.JID, participant.LID)
    return found


def _participant(participant: Any) -> dict[str, str]:
    member = participant_address(participant)
    entry = {"id": member.id or "", "role": _role(participant)}
    if member.lid:
        entry["lid"] = member.lid
    return entry


def group_lids(info: Any) -> list[tuple[str, str]]:
    """The (phone id, LID) pairs a neonize `GroupInfo` reveals."""
    owner = address(info.OwnerJID, info.OwnerPN)
    return lid_pairs(owner, *(participant_address(p) for p in info.Participants))


def group_info(info: Any) -> GroupInfo:
    created = datetime.fromtimestamp(info.GroupCreated, UTC) if info.GroupCreated else None
    return GroupInfo(
        id=chat_id_of(info.JID) or "",
        subject=info.GroupName.Name,
        description=info.GroupTopic.Topic or None,
        owner=address(info.OwnerJID, info.OwnerPN).id,
        participants=[_participant(p) for p in info.Participants],
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
            image = present(dict(caption=caption, **size, **thumbnail, **common))
            return wa.Message(imageMessage=wa.ImageMessage(**image))
        case Video():
            video = present(
                dict(caption=caption, seconds=shown.seconds, **size, **thumbnail, **common)
            )
            return wa.Message(videoMessage=wa.VideoMessage(**video))
        case Audio() | Voice():
            voice = isinstance(content, Voice)
            audio = present(
                dict(PTT=voice, seconds=shown.seconds, waveform=shown.waveform, **common)
            )
            return wa.Message(audioMessage=wa.AudioMessage(**audio))
        case Sticker():
            return wa.Message(stickerMessage=wa.StickerMessage(**present(dict(**size, **common))))
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
