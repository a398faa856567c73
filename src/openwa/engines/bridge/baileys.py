"""Translation of Baileys' events, as the bridge forwards them (JSON of the library's own
shapes), into the engine port's events.

Pure functions over dicts: the tests feed recorded shapes. Baileys hands WhatsApp's
protobuf messages as protobuf.js JSON: camelCase field names, 64-bit numbers as strings,
enums as names (or numbers, for objects the library built by hand), bytes as base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from openwa.engines.base import (
    CallReceived,
    ChatUpdated,
    ContactsSeen,
    ContactUpdated,
    Disconnected,
    EngineEvent,
    Failed,
    GroupUpdated,
    InboundMedia,
    LoggedOut,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    QrUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.engines.unread import marked_unread, unread_ids
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, is_number, is_numeric_lid

log = structlog.get_logger(__name__)

# Messages that only carry another one.
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
_MEDIA = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
_POLLS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3")
# Fields of a message that are plumbing, not content.
_PLUMBING = {"messageContextInfo", "senderKeyDistributionMessage"}
_WAID = re.compile(r"waid=(\d+)")
# WebMessageInfo.Status: what a `messages.update` status means for our message.
_STATUSES = {
    0: "failed",
    "ERROR": "failed",
    2: "sent",
    "SERVER_ACK": "sent",
    3: "delivered",
    "DELIVERY_ACK": "delivered",
    4: "read",
    "READ": "read",
    5: "played",
    "PLAYED": "played",
}
_REVOKE = (0, "REVOKE")
_EDIT = (14, "MESSAGE_EDIT")
_EPHEMERAL = (3, "EPHEMERAL_SETTING")
QR_TIMEOUT = "QR_TIMEOUT: the QR code was not scanned; start the session again"
# Baileys' DisconnectReason codes.
LOGGED_OUT = 401
RESTART_REQUIRED = 515
_CLOSE_REASONS = {
    408: "the connection to WhatsApp was lost or timed out",
    428: "WhatsApp closed the connection",
    440: "the session was opened elsewhere (connection replaced)",
    500: "WhatsApp reported a bad session",
    503: "WhatsApp is unavailable",
}
_PARTICIPANT_ACTIONS = {"add", "remove", "promote", "demote"}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def time_of(value: Any) -> datetime:
    """Unix seconds as a time; missing, zero or out of range is now (no reason to lose
    what carries it)."""
    seconds = _int(value)
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else datetime.now(UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.now(UTC)


def chat_id(jid: Any) -> str | None:
    """Our chat id of a Baileys JID: the device part dropped from user addresses."""
    if not isinstance(jid, str) or "@" not in jid:
        return None
    user, server = jid.split("@", 1)
    if server in ("s.whatsapp.net", "lid"):
        user = user.split(":", 1)[0]
    return f"{user}@{server}"


def phone_of(jid: Any) -> str:
    found = chat_id(jid)
    return found.split("@", 1)[0] if found else ""


def unwrap(message: dict[str, Any]) -> dict[str, Any]:
    for _ in range(4):
        inner = next((message[k].get("message") for k in _WRAPPERS if k in message), None)
        if not isinstance(inner, dict):
            return message
        message = inner
    return message


def _context(content: dict[str, Any], context: Any) -> None:
    if not isinstance(context, dict):
        return
    if context.get("stanzaId"):
        content["replyTo"] = context["stanzaId"]
    if context.get("mentionedJid"):
        content["mentions"] = [chat_id(j) or j for j in context["mentionedJid"]]


def _card(contact: dict[str, Any]) -> dict[str, Any]:
    vcard = contact.get("vcard") or ""
    card: dict[str, Any] = {"name": contact.get("displayName"), "vcard": vcard}
    found = _WAID.search(vcard)
    if found:
        card["phoneNumber"] = found.group(1)
    return card


def _location(loc: dict[str, Any]) -> dict[str, Any]:
    where: dict[str, Any] = {
        "latitude": loc.get("degreesLatitude", 0),
        "longitude": loc.get("degreesLongitude", 0),
    }
    for ours, theirs in (("name", "name"), ("address", "address")):
        if loc.get(theirs):
            where[ours] = loc[theirs]
    return where


def _content(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(type, content) of a WhatsApp message, None for plumbing."""
    if "extendedTextMessage" in message:
        ext = message["extendedTextMessage"]
        content: dict[str, Any] = {"text": ext.get("text", "")}
        _context(content, ext.get("contextInfo"))
        return "text", content
    if message.get("conversation"):
        return "text", {"text": message["conversation"]}
    for name, kind in _MEDIA.items():
        if name in message:
            media = message[name]
            content = {}
            if media.get("caption"):
                content["caption"] = media["caption"]
            _context(content, media.get("contextInfo"))
            if kind == "audio" and media.get("ptt"):
                kind = "voice"
            return kind, content
    if "locationMessage" in message:
        return "location", {"location": _location(message["locationMessage"])}
    if "liveLocationMessage" in message:
        return "live_location", {"location": _location(message["liveLocationMessage"])}
    if "contactMessage" in message:
        return "contacts", {"contacts": [_card(message["contactMessage"])]}
    if "contactsArrayMessage" in message:
        cards = message["contactsArrayMessage"].get("contacts") or []
        return "contacts", {"contacts": [_card(c) for c in cards]}
    for name in _POLLS:
        if name in message:
            poll = message[name]
            return "poll", {
                "poll": {
                    "question": poll.get("name", ""),
                    "options": [o.get("optionName", "") for o in poll.get("options") or []],
                    "selectableCount": _int(poll.get("selectableOptionsCount")),
                }
            }
    if not [k for k in message if k not in _PLUMBING]:
        return None
    return "unknown", {}


def _raw_type(message: dict[str, Any]) -> str | None:
    return next((k for k in message if k not in _PLUMBING), None)


def edited_text(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    message = unwrap(message)
    if message.get("conversation"):
        return str(message["conversation"])
    if "extendedTextMessage" in message:
        return str(message["extendedTextMessage"].get("text", ""))
    for name in _MEDIA:
        if name in message:
            return str(message[name].get("caption", ""))
    return None


@dataclass(frozen=True, slots=True)
class _Where:
    id: str
    chat: str
    sender: str | None
    from_me: bool
    timestamp: datetime
    push_name: str | None
    history: bool
    # The LIDs behind `chat` / `sender` when the stanza gave both a LID and a number.
    chat_lid: str | None = None
    sender_lid: str | None = None


def _other(addressing: dict[str, Any], *names: str) -> str | None:
    """The first of the stanza's alternative addresses (`participant_pn`, ...) given."""
    for name in names:
        found = chat_id(addressing.get(name))
        if found is not None:
            return found
    return None


def _by_number(address: str, other: str | None) -> tuple[str, str | None]:
    """`(phone-number id, LID)` when one of the two is a LID and the other a number, as
    whatsmeow's `SenderAlt` reads; else the address as given, with no LID."""
    if other is None:
        return address, None
    if is_numeric_lid(address) and is_number(other):
        return other, address
    if is_number(address) and is_numeric_lid(other):
        return address, other
    return address, None


def _where(
    info: dict[str, Any], me: str | None, history: bool, addressing: Any = None
) -> _Where | None:
    """Where a message belongs; `addressing` is what the bridge read off its stanza (the
    other address of a LID- or number-addressed sender and recipient), so that a LID
    sender is named by the phone number WhatsApp gave beside it."""
    key = info.get("key") or {}
    chat = chat_id(key.get("remoteJid"))
    if chat is None or not key.get("id"):
        return None
    other = addressing if isinstance(addressing, dict) else {}
    from_me = bool(key.get("fromMe"))
    group = chat.endswith(GROUP_SUFFIX) or chat == "status@broadcast"
    sender: str | None
    sender_lid = chat_lid = None
    if from_me:
        sender = me
        if not group:
            # whatsmeow reads `peer_recipient_*` for our own sends from another device
            recipient = _other(
                other, "peer_recipient_pn", "recipient_pn", "peer_recipient_lid", "recipient_lid"
            )
            chat, chat_lid = _by_number(chat, recipient)
    elif group:
        sender = chat_id(key.get("participant"))
        if sender is not None:
            sender, sender_lid = _by_number(
                sender, _other(other, "participant_pn", "participant_lid")
            )
        # Baileys 6.17.16 tells our own messages in a LID group by comparing its LID
        # participant with our number, so ours from the phone come as someone else's;
        # the number on the stanza says they are ours.
        if me is not None and sender == me:
            from_me, sender_lid = True, None
    else:
        chat, chat_lid = _by_number(chat, _other(other, "sender_pn", "sender_lid"))
        sender, sender_lid = chat, chat_lid
    return _Where(
        id=key["id"],
        chat=chat,
        sender=sender,
        from_me=from_me,
        timestamp=time_of(info.get("messageTimestamp")),
        push_name=info.get("pushName") or None,
        history=history,
        chat_lid=chat_lid,
        sender_lid=sender_lid,
    )


def _protocol(protocol: dict[str, Any], where: _Where) -> EngineEvent | None:
    kind = protocol.get("type", 0)
    target = (protocol.get("key") or {}).get("id")
    if kind in _REVOKE and target:
        return MessageRevoked(target, where.chat, where.sender, history=where.history)
    if kind in _EDIT and target:
        text = edited_text(protocol.get("editedMessage"))
        if text is None:
            return None
        ms = _int(protocol.get("timestampMs"))
        at = time_of(ms // 1000) if ms else where.timestamp
        return MessageEdited(
            target, where.chat, where.sender, text, at, where.from_me, history=where.history
        )
    if kind in _EPHEMERAL and not where.history:
        return ChatUpdated(where.chat, ephemeral_seconds=_int(protocol.get("ephemeralExpiration")))
    return None


def _media_of(message: dict[str, Any], fetched: dict[str, Any] | None) -> InboundMedia | None:
    """The file the bridge downloaded for this message (`fetched`: its entry in the
    event's `media`), described by the message's own media fields."""
    if not fetched or not fetched.get("path"):
        return None
    media: dict[str, Any] = next((message[name] for name in _MEDIA if name in message), {})
    filename = media.get("fileName") if "documentMessage" in message else None
    return InboundMedia(
        mimetype=str(media.get("mimetype") or "application/octet-stream"),
        size=_int(fetched.get("size")),
        filename=str(filename) if filename else None,
        path=Path(str(fetched["path"])),
    )


def media_error(fetched: dict[str, Any] | None, history: bool) -> str:
    """Why a message's media is not stored, in the words every engine uses."""
    if history:
        return "not downloaded: media from a history sync"
    if fetched and fetched.get("error"):
        return f"download failed: {fetched['error']}"
    return "not downloaded"


def message_event(
    info: dict[str, Any],
    me: str | None,
    history: bool,
    fetched: dict[str, Any] | None = None,
    addressing: Any = None,
) -> EngineEvent | None:
    """Our event for one `WebMessageInfo`: a message, reaction, edit, revoke or chat
    setting; None for plumbing (keys, sync notices) and group stubs. `fetched` is what
    the bridge downloaded of its media (`{path, size}`) or why not (`{error}`);
    `addressing` what it read off the message's stanza (see `_where`)."""
    where = _where(info, me, history, addressing)
    message = info.get("message")
    if where is None or not isinstance(message, dict):
        return None
    message = unwrap(message)
    if "reactionMessage" in message:
        reaction = message["reactionMessage"]
        target = (reaction.get("key") or {}).get("id")
        if not target:
            return None
        return ReactionReceived(target, where.chat, where.sender, reaction.get("text") or "")
    if "protocolMessage" in message:
        return _protocol(message["protocolMessage"], where)
    if "pollUpdateMessage" in message or "encReactionMessage" in message:
        return None  # encrypted: Baileys decrypts votes only against a stored poll
    parts = _content(message)
    if parts is None:
        return None
    kind, content = parts
    media = _media_of(message, fetched)
    if media is None and any(name in message for name in _MEDIA):
        content["mediaError"] = media_error(fetched, history)
    return MessageReceived(
        id=where.id,
        chat_id=where.chat,
        sender=where.sender,
        type=kind,
        content=content,
        timestamp=where.timestamp,
        from_me=where.from_me,
        push_name=where.push_name,
        history=where.history,
        raw_type=_raw_type(message) if kind == "unknown" else None,
        media=media,
        sender_lid=where.sender_lid,
        chat_lid=where.chat_lid,
    )


# ---------------------------------------------------------------------------------------
# Events by name


@dataclass(frozen=True, slots=True)
class Closed:
    """`connection.update` closed: the client decides (restart, log out, reconnect)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Opened:
    """`connection.update` open: linked and connected."""


Translated = EngineEvent | Closed | Opened


def connection(data: dict[str, Any]) -> Iterator[Translated]:
    if data.get("qr"):
        yield QrUpdated(str(data["qr"]))
    state = data.get("connection")
    if state == "open":
        yield Opened()
    elif state == "close":
        last = data.get("lastDisconnect") or {}
        status = _int(last.get("statusCode"))
        message = str(last.get("message") or "").strip()
        if "QR refs attempts ended" in message:
            # Baileys showed its last code: nobody scanned (the session stops).
            yield Failed(QR_TIMEOUT)
            return
        reason = _CLOSE_REASONS.get(status, "the connection to WhatsApp closed")
        detail = f"{reason} ({status}{': ' + message if message else ''})"
        yield Closed(status, detail)


# Closes that reconnecting cannot mend, and that WhatsApp penalises when a client
# keeps logging in anyway (as whatsmeow's engine already ends them): the session ends
# `failed`, and a client starts it again when it may. 440 is another client on this
# device: taking it back at once knocks that one off, which comes back in turn.
_FINAL_CLOSES = {
    402: "TEMPORARY_BAN: WhatsApp banned this account for a while",
    403: "FORBIDDEN: WhatsApp refuses this account (banned?)",
    405: "CLIENT_OUTDATED: WhatsApp refuses this Baileys version",
    406: "BANNED: WhatsApp refuses this account",
    411: "MULTIDEVICE_MISMATCH: WhatsApp refuses this device",
    440: "STREAM_REPLACED: another client connected with this device; start the session "
    "again to take it back",
}


def closed_event(closed: Closed) -> EngineEvent:
    if closed.status == LOGGED_OUT:
        return LoggedOut(f"logged out: {closed.reason}")
    final = _FINAL_CLOSES.get(closed.status)
    if final is not None:
        return Failed(f"{final} ({closed.reason})")
    return Disconnected(closed.reason)


def _upsert(data: dict[str, Any], me: str | None) -> Iterator[Translated]:
    history = data.get("type") != "notify"
    fetched = data.get("media") or {}
    addressing = data.get("addressing")
    addressing = addressing if isinstance(addressing, dict) else {}
    for info in data.get("messages") or []:
        key = (info.get("key") or {}).get("id")
        event = message_event(
            info,
            me,
            history,
            fetched.get(key) if key else None,
            addressing.get(key) if key else None,
        )
        if event is not None:
            yield event


def _history(data: dict[str, Any], me: str | None) -> Iterator[Translated]:
    unread = unread_ids(data)
    for info in data.get("messages") or []:
        event = message_event(info, me, True)
        if event is not None:
            yield marked_unread(event, unread)


def _bytes_hex(value: Any) -> str | None:
    """Bytes as the bridge writes them (`{"type": "Buffer", "data": base64}`, or the
    base64 string protobuf.js gives), in hex."""
    if isinstance(value, dict) and value.get("type") == "Buffer":
        value = value.get("data")
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4)).hex()
    except (ValueError, binascii.Error):
        return None


def _votes(key: dict[str, Any], update: dict[str, Any], me: str | None) -> Iterator[Translated]:
    """Votes Baileys decrypted (its `getMessage` had the poll): options by hash."""
    chat = chat_id(key.get("remoteJid"))
    for poll_update in update.get("pollUpdates") or []:
        by = poll_update.get("pollUpdateMessageKey") or {}
        voter = me if by.get("fromMe") else chat_id(by.get("participant") or by.get("remoteJid"))
        chosen = (poll_update.get("vote") or {}).get("selectedOptions") or []
        hashes = [h for h in (_bytes_hex(o) for o in chosen) if h]
        if chat and key.get("id"):
            yield PollVoted(key["id"], chat, voter, [], option_hashes=hashes)


def _updates(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    """Statuses of our messages; on a message we received, READ is the account reading
    it elsewhere (Baileys turns the phone's `read-self` receipts into this); votes."""
    for item in data:
        key, update = item.get("key") or {}, item.get("update") or {}
        if update.get("pollUpdates"):
            yield from _votes(key, update, me)
            continue
        chat = chat_id(key.get("remoteJid"))
        status = _STATUSES.get(update.get("status", -1))
        if not chat or not key.get("id") or status is None:
            continue
        if key.get("fromMe"):
            yield MessageAck(key["id"], chat, status)
        elif status in ("read", "played"):
            yield ReadBySelf(chat, [key["id"]])


def _receipts(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    for item in data:
        key, receipt = item.get("key") or {}, item.get("receipt") or {}
        chat = chat_id(key.get("remoteJid"))
        if not chat or not key.get("id"):
            continue
        if receipt.get("playedTimestamp"):
            status = "played"
        elif receipt.get("readTimestamp"):
            status = "read"
        elif receipt.get("receiptTimestamp"):
            status = "delivered"
        else:
            continue
        yield MessageAck(key["id"], chat, status, by=chat_id(receipt.get("userJid")))


def _reactions(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    for item in data:
        key, reaction = item.get("key") or {}, item.get("reaction") or {}
        chat = chat_id(key.get("remoteJid"))
        if not chat or not key.get("id"):
            continue
        by = reaction.get("key") or {}
        sender = me if by.get("fromMe") else chat_id(by.get("participant") or by.get("remoteJid"))
        yield ReactionReceived(key["id"], chat, sender, reaction.get("text") or "")


def _presence(data: dict[str, Any], me: str | None) -> Iterator[Translated]:
    chat = chat_id(data.get("id"))
    if chat is None:
        return
    for jid, presence in (data.get("presences") or {}).items():
        state = presence.get("lastKnownPresence")
        if not state:
            continue
        seen = _int(presence.get("lastSeen"))
        yield PresenceUpdated(chat, chat_id(jid), str(state), time_of(seen) if seen else None)


def _participants(data: dict[str, Any], me: str | None) -> Iterator[Translated]:
    group, action = chat_id(data.get("id")), data.get("action")
    if group is None or action not in _PARTICIPANT_ACTIONS:
        return
    people = [
        chat_id(p if isinstance(p, str) else (p or {}).get("id"))
        for p in data.get("participants") or []
    ]
    yield GroupUpdated(group, str(action), [p for p in people if p], by=chat_id(data.get("author")))


def _groups(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    for item in data:
        group = chat_id(item.get("id"))
        if group is None:
            continue
        by = chat_id(item.get("author"))
        if "subject" in item:
            yield GroupUpdated(group, "subject", by=by, value=item["subject"])
        if "desc" in item:
            yield GroupUpdated(group, "description", by=by, value=item.get("desc") or "")
        if "announce" in item or "restrict" in item:
            yield GroupUpdated(group, "settings", by=by)
        if "ephemeralDuration" in item:
            seconds = str(_int(item["ephemeralDuration"]))
            yield GroupUpdated(group, "ephemeral", by=by, value=seconds)


def _calls(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    for call in data:
        sender = chat_id(call.get("from"))
        if call.get("status") != "offer" or sender is None:
            continue
        yield CallReceived(
            str(call.get("id", "")),
            sender,
            bool(call.get("isVideo")),
            bool(call.get("isGroup")),
            _time_of_date(call.get("date")),
        )


def _time_of_date(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return time_of(value)


def _contacts(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    names: dict[str, str] = {}
    for contact in data:
        who = chat_id(contact.get("id"))
        if who is None:
            continue
        name = contact.get("notify") or contact.get("name") or contact.get("verifiedName")
        if name and who.endswith(USER_SUFFIX):
            names[who] = str(name)
        lid = chat_id(contact.get("lid"))
        if lid and who.endswith(USER_SUFFIX):
            yield ContactUpdated(who, lid=lid)
    if names:
        yield ContactsSeen(names)


def _chats(data: list[dict[str, Any]], me: str | None) -> Iterator[Translated]:
    for chat in data:
        which = chat_id(chat.get("id"))
        if which is None:
            continue
        changes: dict[str, Any] = {}
        if "archived" in chat:
            changes["archived"] = bool(chat["archived"])
        if "pinned" in chat:
            changes["pinned"] = bool(chat["pinned"])
        if "muteEndTime" in chat:
            changes["muted"] = _int(chat["muteEndTime"]) != 0
        if "ephemeralExpiration" in chat:
            changes["ephemeral_seconds"] = _int(chat["ephemeralExpiration"])
        if changes:
            yield ChatUpdated(which, **changes)


def _number_shared(data: dict[str, Any], me: str | None) -> Iterator[Translated]:
    """Baileys 6.17.16's only LID-to-phone mapping: a contact shared its number."""
    phone, lid = chat_id(data.get("jid")), chat_id(data.get("lid"))
    if phone and lid and phone.endswith(USER_SUFFIX) and lid.endswith("@lid"):
        yield ContactUpdated(phone, lid=lid)


_BY_NAME: dict[str, Callable[[Any, str | None], Iterator[Translated]]] = {
    "chats.phoneNumberShare": _number_shared,
    "messages.upsert": _upsert,
    "messaging-history.set": _history,
    "messages.update": _updates,
    "message-receipt.update": _receipts,
    "messages.reaction": _reactions,
    "presence.update": _presence,
    "group-participants.update": _participants,
    "groups.update": _groups,
    "call": _calls,
    "contacts.update": _contacts,
    "contacts.upsert": _contacts,
    "chats.update": _chats,
}


def translate(name: str, data: Any, me: str | None) -> list[Translated]:
    """Our events for one forwarded Baileys event (`me`: our own chat id, once linked).

    A list is translated item by item: one item the translation cannot read is logged
    and skipped, never the ones beside it."""
    if name == "connection.update":
        return list(connection(data or {}))
    handler = _BY_NAME.get(name)
    if handler is None:
        return []
    if not isinstance(data, list):
        return list(handler(data, me))
    found: list[Translated] = []
    for item in data:
        try:
            found.extend(handler([item], me))
        except Exception:
            log.warning("baileys_item_unreadable", name=name, exc_info=True)
    return found
