"""Translation of whatsapp-web.js' events, as the bridge forwards them (the JSON of the
library's `Message`, `Reaction`, `GroupNotification` and `Call` objects, an event's
arguments in order), into the engine port's events.

whatsapp-web.js names users `<digits>@c.us`; ours are `<digits>@s.whatsapp.net`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from openwa.engines.base import (
    UNDECRYPTABLE,
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
    QrUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.engines.bridge.baileys import QR_TIMEOUT, media_error
from openwa.engines.bridge.baileys import time_of as _time
from openwa.engines.unread import marked_unread, unread_ids
from openwa.kit.chat_ids import USER_SUFFIX, is_number, is_numeric_lid, phone_of

log = structlog.get_logger(__name__)

_ACKS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "played"}
_MEDIA = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "ptt": "voice",
    "document": "document",
    "sticker": "sticker",
}
_GROUP_ACTIONS = {
    "add": "add",
    "invite": "join",
    "membership_approval_request": "approval",
    "remove": "remove",
    "leave": "leave",
    "promote": "promote",
    "demote": "demote",
    "subject": "subject",
    "description": "description",
    "announce": "settings",
    "restrict": "settings",
}


@dataclass(frozen=True, slots=True)
class Ready:
    """`ready`: linked and connected; `me` our own chat id when the bridge gave it."""

    me: str | None = None
    push_name: str | None = None


def chat_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("_serialized") or (
            f"{value.get('user')}@{value.get('server')}" if value.get("user") else None
        )
    if not isinstance(value, str) or "@" not in value:
        return None
    user, server = value.split("@", 1)
    if server == "c.us":
        server = USER_SUFFIX[1:]
    return f"{user.split(':', 1)[0]}@{server}"


def _message_id(message: dict[str, Any]) -> str | None:
    key = message.get("id")
    if isinstance(key, dict):
        found = key.get("id")
        return str(found) if found else None
    return None


def _media(fetched: Any, mimetype: str | None) -> InboundMedia | None:
    """The file the bridge downloaded (`{path, size, mimetype, filename}`), if any."""
    if not isinstance(fetched, dict) or not fetched.get("path"):
        return None
    return InboundMedia(
        mimetype=str(fetched.get("mimetype") or mimetype or "application/octet-stream"),
        size=int(fetched.get("size") or 0),
        filename=fetched.get("filename") or None,
        path=Path(str(fetched["path"])),
    )


def _content(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = str(message.get("type") or "")
    body = message.get("body") or ""
    content: dict[str, Any] = {}
    if message.get("mentionedIds"):
        content["mentions"] = [chat_id(m) or m for m in message["mentionedIds"]]
    quoted = (message.get("_data") or {}).get("quotedStanzaID")
    if quoted:
        content["replyTo"] = quoted
    if kind == "chat":
        return "text", {"text": body, **content}
    if kind in _MEDIA:
        if body and kind in ("image", "video", "document"):
            content["caption"] = body
        return _MEDIA[kind], content
    if kind == "location" and isinstance(message.get("location"), dict):
        loc = message["location"]
        where: dict[str, Any] = {
            "latitude": float(loc.get("latitude") or 0),
            "longitude": float(loc.get("longitude") or 0),
        }
        if loc.get("description"):
            where["name"] = loc["description"]
        return "location", {"location": where}
    if kind in ("vcard", "multi_vcard"):
        cards = [{"name": None, "vcard": v} for v in message.get("vCards") or []]
        return "contacts", {"contacts": cards}
    if kind == "poll_creation":
        data = message.get("_data") or {}
        options = [o.get("name", "") for o in data.get("pollOptions") or []]
        poll = {
            "question": data.get("pollName") or body,
            "options": options,
            "selectableCount": int(data.get("pollSelectableOptionsCount") or 0),
        }
        return "poll", {"poll": poll}
    return "unknown", {}


def _numbers(lids: Any) -> dict[str, str]:
    """The bridge's `lids` (LID -> the number the page gave for it) as our ids, only the
    pairs that map a LID to a phone number."""
    if not isinstance(lids, dict):
        return {}
    numbers: dict[str, str] = {}
    for lid, number in lids.items():
        lid_id, phone = chat_id(lid), chat_id(number)
        if is_numeric_lid(lid_id) and is_number(phone):
            numbers[str(lid_id)] = str(phone)
    return numbers


def _by_number(address: str | None, numbers: dict[str, str]) -> tuple[str | None, str | None]:
    """`(phone-number id, LID)` for a LID the page mapped; else the address, no LID."""
    if address is not None and address in numbers:
        return numbers[address], address
    return address, None


def message_event(
    message: dict[str, Any], fetched: Any = None, lids: Any = None, history: bool = False
) -> EngineEvent | None:
    """Our event for one message; `lids` the numbers the page gave for the LIDs it
    names (the bridge asks), so a LID sender or chat is named by number, the LID
    alongside."""
    message_id = _message_id(message)
    from_me = bool(message.get("fromMe"))
    numbers = _numbers(lids)
    chat, chat_lid = _by_number(
        chat_id(message.get("to") if from_me else message.get("from")), numbers
    )
    if message_id is None or chat is None:
        return None
    kind = str(message.get("type") or "")
    if kind in ("revoked", "e2e_notification", "notification_template", "gp2", "protocol"):
        return None
    sender, sender_lid = _by_number(chat_id(message.get("author") or message.get("from")), numbers)
    received, content = _content(message)
    media = _media(fetched, (message.get("_data") or {}).get("mimetype"))
    if media is None and kind in _MEDIA:
        content["mediaError"] = media_error(fetched if isinstance(fetched, dict) else None, history)
    return MessageReceived(
        id=message_id,
        chat_id=chat,
        sender=sender,
        type=received,
        content=content,
        timestamp=_time(message.get("timestamp")),
        from_me=from_me,
        push_name=(message.get("_data") or {}).get("notifyName") or None,
        raw_type=kind if received == "unknown" else None,
        media=media,
        history=history,
        sender_lid=sender_lid,
        chat_lid=chat_lid,
    )


# The bridge names an event's arguments; these are their places in the library's call.
_ARGUMENTS = {
    "message": ("message", "media", "lids"),
    "message_create": ("message", "lids"),
    "message_ack": ("message", "ack"),
    "message_revoke_everyone": ("message", "revokedMessage"),
    "message_reaction": ("reaction",),
    "message_edit": ("message", "newBody", "prevBody"),
    "group_join": ("notification",),
    "group_leave": ("notification",),
    "group_update": ("notification",),
    "group_admin_changed": ("notification",),
    "group_membership_request": ("notification",),
    "chat_archived": ("chatId", "archived"),
    "message_ciphertext": ("message",),
    "call": ("call",),
    "vote_update": ("vote",),
    "unread_count": ("chat", "readIds"),
    "lid_mapping": ("lids",),
    "qr": ("qr",),
    "ready": ("info",),
    "disconnected": ("reason",),
    "init_failed": ("message",),
    "auth_failure": ("message",),
}


def _args(name: str, data: Any) -> list[Any]:
    """An event's arguments in the library's order, from the bridge's named ones."""
    if isinstance(data, list):
        return data
    names = _ARGUMENTS.get(name)
    if isinstance(data, dict) and names is not None and any(n in data for n in names):
        return [data.get(n) for n in names]
    return [data]


Translated = EngineEvent | Ready


def _message(args: list[Any]) -> Iterator[Translated]:
    fetched = args[1] if len(args) > 1 else None
    lids = args[2] if len(args) > 2 else None
    event = message_event(args[0], fetched, lids) if args and isinstance(args[0], dict) else None
    if event is not None:
        yield event


def _own_message(args: list[Any]) -> Iterator[Translated]:
    """`message_create` fires for every message; only ours are news (from the phone)."""
    if args and isinstance(args[0], dict) and args[0].get("fromMe"):
        lids = args[1] if len(args) > 1 else None
        event = message_event(args[0], None, lids)
        if event is not None:
            yield event


def _ack(args: list[Any]) -> Iterator[Translated]:
    message = args[0] if args and isinstance(args[0], dict) else {}
    ack = args[1] if len(args) > 1 else message.get("ack")
    status = _ACKS.get(int(ack)) if isinstance(ack, int) else None
    message_id, chat = _message_id(message), chat_id(message.get("to"))
    if status and message_id and chat and message.get("fromMe"):
        yield MessageAck(message_id, chat, status)


def _revoked(args: list[Any]) -> Iterator[Translated]:
    before = args[1] if len(args) > 1 and isinstance(args[1], dict) else None
    after = args[0] if args and isinstance(args[0], dict) else {}
    message = before or after
    message_id = _message_id(message)
    from_me = bool(message.get("fromMe"))
    chat = chat_id(message.get("to") if from_me else message.get("from"))
    if message_id and chat:
        yield MessageRevoked(message_id, chat, chat_id(message.get("author") or after.get("from")))


def _reaction(args: list[Any]) -> Iterator[Translated]:
    reaction = args[0] if args and isinstance(args[0], dict) else {}
    target = reaction.get("msgId") or {}
    message_id = target.get("id") if isinstance(target, dict) else None
    chat = chat_id(target.get("remote") if isinstance(target, dict) else None)
    if message_id and chat:
        sender = chat_id(reaction.get("senderId"))
        yield ReactionReceived(str(message_id), chat, sender, str(reaction.get("reaction") or ""))


def _edit(args: list[Any]) -> Iterator[Translated]:
    message = args[0] if args and isinstance(args[0], dict) else {}
    text = args[1] if len(args) > 1 else message.get("body")
    message_id = _message_id(message)
    from_me = bool(message.get("fromMe"))
    chat = chat_id(message.get("to") if from_me else message.get("from"))
    if message_id and chat and isinstance(text, str):
        sender = chat_id(message.get("author") or message.get("from"))
        at = _time((message.get("_data") or {}).get("latestEditSenderTimestampMs", 0) // 1000)
        yield MessageEdited(message_id, chat, sender, text, at, from_me)


def _group(args: list[Any]) -> Iterator[Translated]:
    note = args[0] if args and isinstance(args[0], dict) else {}
    group = chat_id(note.get("chatId"))
    action = _GROUP_ACTIONS.get(str(note.get("type") or ""))
    if group is None or action is None:
        return
    people = [p for p in (chat_id(r) for r in note.get("recipientIds") or []) if p]
    author = chat_id(note.get("author"))
    if action == "approval" and not people and author:
        people = [author]  # who asks to join
    value = note.get("body") if action in ("subject", "description") else None
    yield GroupUpdated(group, action, people, by=chat_id(note.get("author")), value=value)


def _archived(args: list[Any]) -> Iterator[Translated]:
    chat = chat_id(args[0]) if args else None
    if chat is not None:
        yield ChatUpdated(chat, archived=bool(args[1]) if len(args) > 1 else True)


def _ciphertext(args: list[Any]) -> Iterator[Translated]:
    """A message the page could not decrypt (yet): a placeholder that the message itself
    replaces when it comes under the same id."""
    message = args[0] if args and isinstance(args[0], dict) else {}
    message_id, from_me = _message_id(message), bool(message.get("fromMe"))
    chat = chat_id(message.get("to") if from_me else message.get("from"))
    if message_id and chat:
        yield MessageReceived(
            id=message_id,
            chat_id=chat,
            sender=chat_id(message.get("author") or message.get("from")),
            type=UNDECRYPTABLE,
            content={"reason": "decryption_failed"},
            timestamp=_time(message.get("timestamp")),
            from_me=from_me,
        )


def _call(args: list[Any]) -> Iterator[Translated]:
    call = args[0] if args and isinstance(args[0], dict) else {}
    sender = chat_id(call.get("from"))
    if sender is not None and not call.get("fromMe"):
        yield CallReceived(
            str(call.get("id") or ""),
            sender,
            bool(call.get("isVideo")),
            bool(call.get("isGroup")),
            _time(call.get("timestamp")),
        )


def _vote(args: list[Any]) -> Iterator[Translated]:
    """A vote names its options: whatsapp-web.js decrypted it in the page."""
    vote = args[0] if args and isinstance(args[0], dict) else {}
    parent: dict[str, Any] = vote.get("parentMessage") or {}
    data: dict[str, Any] = parent.get("_data") or parent
    found = data.get("id")
    key: dict[str, Any] = found if isinstance(found, dict) else {}
    poll_id, chat = key.get("id"), chat_id(key.get("remote"))
    if poll_id and chat:
        selected = [str(o.get("name")) for o in vote.get("selectedOptions") or [] if o.get("name")]
        yield PollVoted(str(poll_id), chat, chat_id(vote.get("voter")), selected)


def _qr(args: list[Any]) -> Iterator[Translated]:
    if args and isinstance(args[0], str):
        yield QrUpdated(args[0])


def _ready(args: list[Any]) -> Iterator[Translated]:
    info = args[0] if args and isinstance(args[0], dict) else {}
    yield Ready(chat_id(info.get("wid") or info.get("me")), info.get("pushname") or None)


_FINAL_STATES = {
    "TOS_BLOCK": "BANNED: WhatsApp blocked this account for its terms of service",
    "SMB_TOS_BLOCK": "BANNED: WhatsApp blocked this business account for its terms of service",
    "DEPRECATED_VERSION": "CLIENT_OUTDATED: WhatsApp refuses this WhatsApp Web version",
    "CONFLICT": "STREAM_REPLACED: another client connected with this device; start the "
    "session again to take it back",
}


def _disconnected(args: list[Any]) -> Iterator[Translated]:
    reason = str(args[0]) if args else "unknown"
    if reason == "Max qrcode retries reached":  # the bridge's `qrMaxRetries`: nobody scanned
        yield Failed(QR_TIMEOUT)
    elif reason in ("LOGOUT", "UNPAIRED", "UNPAIRED_IDLE"):
        yield LoggedOut(f"logged out: {reason}")
    elif reason in _FINAL_STATES:
        # Relaunching the browser cannot mend these, and logging in again and again is
        # what WhatsApp penalises: the session ends `failed`.
        yield Failed(f"{_FINAL_STATES[reason]} (whatsapp-web.js: {reason})")
    else:
        yield Disconnected(f"whatsapp-web.js disconnected: {reason}")


def _failed(args: list[Any]) -> Iterator[Translated]:
    detail = args[0] if args else None
    message = detail.get("message") if isinstance(detail, dict) else detail
    yield Disconnected(f"whatsapp-web.js could not start: {message or 'unknown error'}")


def _read_on_phone(args: list[Any]) -> Iterator[Translated]:
    """A chat's unread count fell to zero: the messages the bridge saw come in it since
    (`readIds`) were read elsewhere, the phone most often; ours are read too."""
    chat = args[0] if args and isinstance(args[0], dict) else {}
    ids = args[1] if len(args) > 1 and isinstance(args[1], list) else []
    which = chat_id(chat.get("id"))
    read = [str(i) for i in ids if isinstance(i, str) and i]
    if which is not None and chat.get("unreadCount") == 0 and read:
        yield ReadBySelf(which, read)


def _lid_mapping(args: list[Any]) -> Iterator[Translated]:
    """Numbers the page gave for LIDs the bridge asked about beside the events (a group
    member's): each maps its LID, and what was stored under it joins the number's."""
    for lid, phone in _numbers(args[0] if args else None).items():
        yield ContactUpdated(phone, lid=lid)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _history(args: list[Any]) -> Iterator[Translated]:
    """What the bridge sends once a session is ready: its recent chats' settings and
    names, then their latest messages, stored as history (without events)."""
    data = args[0] if args and isinstance(args[0], dict) else {}
    chats = _list(data.get("chats"))
    names: dict[str, str] = {}
    for chat in chats:
        which = chat_id(chat.get("id")) if isinstance(chat, dict) else None
        if which is None:
            continue
        settings = ChatUpdated(
            which,
            archived=bool(chat.get("archived")),
            pinned=bool(chat.get("pinned")),
            muted=bool(chat.get("isMuted")),
        )
        # Only chats with a setting on, as for whatsmeow: the others announce nothing.
        if settings.archived or settings.pinned or settings.muted:
            yield settings
        name = chat.get("name")
        named = isinstance(name, str) and name.strip() and which.endswith(USER_SUFFIX)
        # a chat without a saved name is titled by its number (formatted): no name to keep
        if named and "".join(c for c in name if c.isdigit()) != phone_of(which):
            names[which] = name.strip()
    if names:
        yield ContactsSeen(names)
    messages = _list(data.get("messages"))
    unread = unread_ids(data)
    for message in messages:
        try:
            event = message_event(message, history=True) if isinstance(message, dict) else None
        except Exception:  # one message it cannot read, never the ones beside it
            log.warning("webjs_history_message_unreadable", exc_info=True)
            continue
        if event is not None:
            yield marked_unread(event, unread)


def _auth_failure(args: list[Any]) -> Iterator[Translated]:
    yield LoggedOut(f"authentication failed: {args[0] if args else 'unknown'}")


_BY_NAME: dict[str, Callable[[list[Any]], Iterator[Translated]]] = {
    "qr": _qr,
    "ready": _ready,
    "message": _message,
    "message_create": _own_message,
    "message_ack": _ack,
    "message_revoke_everyone": _revoked,
    "message_reaction": _reaction,
    "message_edit": _edit,
    "group_join": _group,
    "group_leave": _group,
    "group_update": _group,
    "group_admin_changed": _group,
    "group_membership_request": _group,
    "chat_archived": _archived,
    "message_ciphertext": _ciphertext,
    "unread_count": _read_on_phone,
    "history": _history,
    "lid_mapping": _lid_mapping,
    "call": _call,
    "vote_update": _vote,
    "disconnected": _disconnected,
    "init_failed": _failed,
    "auth_failure": _auth_failure,
}


def translate(name: str, data: Any, me: str | None) -> list[Translated]:
    handler = _BY_NAME.get(name)
    return [] if handler is None else list(handler(_args(name, data)))
