"""Translation of a history sync chunk (what the phone hands a newly linked device):
its messages, edits and revokes, contact names, polls, and the LIDs it maps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from openwa.engines.base import ChatUpdated, MessageEdited, MessageReceived, MessageRevoked
from openwa.engines.unread import marked_unread, newest_inbound
from openwa.engines.whatsmeow.translate import (
    Address,
    Inbound,
    Where,
    poll_options,
    timestamp_of,
    translate_message,
)
from openwa.kit.chat_ids import GROUP_SUFFIX, is_number, is_numeric_lid


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    # messages, edits and revokes (all with `history`), in the chunk's order
    messages: list[Inbound]
    # chat id -> name, from conversations and push names
    names: dict[str, str]
    # option names by hash of the polls in this chunk, by poll id
    polls: dict[str, dict[bytes, str]] = field(default_factory=dict)
    # (phone id, LID) pairs the chunk maps
    lids: list[tuple[str, str]] = field(default_factory=list)
    # chats archived, pinned, muted or with a disappearing timer on the phone
    settings: list[ChatUpdated] = field(default_factory=list)


_HISTORY_EVENTS = (MessageReceived, MessageRevoked, MessageEdited)


def _plain(text: str) -> str:
    """A JID's text without its device part (`123:4@s.whatsapp.net` -> `123@...`)."""
    user, _, server = text.partition("@")
    return f"{user.partition(':')[0]}@{server}" if server else text


def _history_phones(data: Any) -> dict[str, str]:
    """LID -> phone id, from a chunk's mapping table and its conversations."""
    phones: dict[str, str] = {}
    found = [(m.pnJID, m.lidJID) for m in data.phoneNumberToLidMappings]
    found += [(c.pnJID, c.lidJID or c.ID) for c in data.conversations]
    for phone, lid in found:
        # Paired as `address()` pairs them: a phone number's address and a LID, of digits.
        if phone and is_numeric_lid(_plain(lid)) and is_number(_plain(phone)):
            phones[_plain(lid)] = _plain(phone)
    return phones


def _history_address(chat_id: str | None, phones: dict[str, str]) -> Address:
    if chat_id is None:
        return Address(None)
    chat_id = _plain(chat_id)
    phone = phones.get(chat_id)
    return Address(phone, chat_id) if phone else Address(chat_id)


def history_batch(event: Any) -> HistoryBatch:
    """Messages and names from a neonize `HistorySyncEv` (one chunk of many), LID
    chats and senders named by phone where the chunk maps them."""
    data = event.Data
    phones = _history_phones(data)
    names: dict[str, str] = {}
    for pushname in data.pushnames:
        if pushname.ID and pushname.pushname:
            names[_history_address(pushname.ID, phones).id or pushname.ID] = pushname.pushname
    batch = HistoryBatch([], names, lids=[(phone, lid) for lid, phone in phones.items()])
    for conversation in data.conversations:
        if not conversation.ID:
            continue
        chat = _history_address(conversation.ID, phones)
        if conversation.name and conversation.ID.endswith(GROUP_SUFFIX):
            names[conversation.ID] = conversation.name
        settings = _chat_settings(chat.id or conversation.ID, conversation)
        if settings is not None:
            batch.settings.append(settings)
        start = len(batch.messages)
        for item in conversation.messages:
            _history_message(batch, chat, item.message, phones)
        if data.syncType == _INITIAL_BOOTSTRAP:
            _keep_unread(batch.messages, start, conversation)
    return batch


_INITIAL_BOOTSTRAP = 0  # HistorySync.INITIAL_BOOTSTRAP: the chats as they are at the link


def _keep_unread(items: list[Inbound], start: int, conversation: Any) -> None:
    """Of the conversation's messages (`items[start:]`), those the phone still has
    unread (its `unreadCount` newest from others) are stored unread.

    Only from the first chunks of a link (later syncs bring older messages, and a count
    repeated there would name old ones that no read receipt will ever mend), and only
    when the chunk holds the chat's last message: the newest messages must be here."""
    mine = items[start:]
    received = [i.event for i in mine if isinstance(i.event, MessageReceived)]
    last = conversation.lastMsgTimestamp
    if not received or (last and max(m.timestamp for m in received) < timestamp_of(last)):
        return
    ids = newest_inbound(received, conversation.unreadCount)
    if ids:
        items[start:] = [replace(i, event=marked_unread(i.event, ids)) for i in mine]


_FOREVER = 2**64 - 1  # WhatsApp's -1 in the unsigned field: muted for ever


def _muted(end: int, now: float | None = None) -> bool:
    """Muted now: for ever, or until a time still to come (seconds, or milliseconds)."""
    if end == _FOREVER or end < 0:
        return True
    if end == 0:
        return False
    seconds = end / 1000 if end > 10**11 else end
    return seconds > (time.time() if now is None else now)


def _chat_settings(chat_id: str, conversation: Any) -> ChatUpdated | None:
    """A chat's settings as the phone has them; only chats with any set (a chunk names
    every chat: the others would announce nothing new)."""
    muted = _muted(conversation.muteEndTime)
    if not (
        conversation.archived or conversation.pinned or muted or conversation.ephemeralExpiration
    ):
        return None
    return ChatUpdated(
        chat_id,
        ephemeral_seconds=conversation.ephemeralExpiration or None,
        archived=bool(conversation.archived),
        pinned=bool(conversation.pinned),
        muted=muted,
    )


def _history_message(batch: HistoryBatch, chat: Address, web: Any, phones: dict[str, str]) -> None:
    key = web.key
    sender = Address(None)
    if not key.fromMe:
        sender = _history_address(key.participant or web.participant or chat.lid or chat.id, phones)
    where = Where(
        chat=chat,
        sender=sender,
        from_me=bool(key.fromMe),
        id=key.ID,
        timestamp=timestamp_of(web.messageTimestamp),
        push_name=web.pushName or None,
        history=True,
    )
    translated = translate_message(web.message, where)
    if translated is not None and isinstance(translated.event, _HISTORY_EVENTS):
        batch.messages.append(translated)
    options = poll_options(web.message)
    if options is not None and key.ID:
        batch.polls[key.ID] = options
