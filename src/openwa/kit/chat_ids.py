"""Chat ids: every form a client may send, normalised to WhatsApp's canonical address."""

from __future__ import annotations

import functools
import re

from openwa.errors import InvalidChatId
from openwa.kit.phone import normalize_phone

USER_SUFFIX = "@s.whatsapp.net"
GROUP_SUFFIX = "@g.us"
LID_SUFFIX = "@lid"
STATUS_BROADCAST = "status@broadcast"
_GROUP_RE = re.compile(r"^[0-9]{5,20}(-[0-9]{5,20})?@g\.us$")
# Addresses that engines report and that we pass through unchanged.
_PASSTHROUGH_RE = re.compile(r"^[0-9A-Za-z._:-]{1,64}@(lid|newsletter)$")


def normalize_chat_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 128:
        raise InvalidChatId(details={"chatId": raw[:128]})
    return _normalized(value)


@functools.lru_cache(maxsize=4096)
def _normalized(value: str) -> str:
    # Cached: parsing a phone number costs more than the rest of an accepted send, and
    # integrations write to the same chats again and again (errors are not cached). Only
    # stripped values of at most 128 characters are keys: a raw one padded to a
    # megabyte was kept whole, 4,096 of them (4 GiB) for any key that may send.
    lowered = value.lower()
    if lowered == STATUS_BROADCAST or _PASSTHROUGH_RE.fullmatch(value):
        return value
    if lowered.endswith(GROUP_SUFFIX):
        if not _GROUP_RE.fullmatch(lowered):
            raise InvalidChatId("not a group address", details={"chatId": value})
        return lowered
    for suffix in (USER_SUFFIX, "@c.us"):
        if lowered.endswith(suffix):
            user = value[: -len(suffix)].split(":")[0]
            if not (user.isascii() and user.isdigit()):
                raise InvalidChatId(details={"chatId": value})
            return normalize_phone(user) + USER_SUFFIX
    if "@" in value or not re.fullmatch(r"\+?[0-9 ()./-]{5,32}", value):
        raise InvalidChatId(details={"chatId": value})
    return normalize_phone(value) + USER_SUFFIX


def phone_of(chat_id: str) -> str | None:
    """The phone number of a user address, or None for groups and other addresses."""
    if chat_id.endswith(USER_SUFFIX):
        return chat_id[: -len(USER_SUFFIX)]
    return None


def is_lid(address: str | None) -> bool:
    """Whether an address is a WhatsApp LID (`...@lid`), the id WhatsApp hides a phone
    number behind."""
    return address is not None and address.endswith(LID_SUFFIX)


def _digits(user: str) -> bool:
    return re.fullmatch(r"[0-9]{1,32}", user) is not None


def is_number(address: str | None) -> bool:
    """Whether an address is a phone number's (`<digits>@s.whatsapp.net`): what an
    engine's other address for a LID must be before we map one to the other."""
    phone = phone_of(address) if address is not None else None
    return phone is not None and _digits(phone)


def is_numeric_lid(address: str | None) -> bool:
    """A LID as WhatsApp makes them (`<digits>@lid`)."""
    return is_lid(address) and address is not None and _digits(address[: -len(LID_SUFFIX)])


def chat_kind(chat_id: str) -> str:
    """`user`, `group`, `status` or `channel`: what `config.ignore` filters by."""
    if chat_id.endswith(GROUP_SUFFIX):
        return "group"
    if chat_id == STATUS_BROADCAST:
        return "status"
    if chat_id.endswith("@newsletter"):
        return "channel"
    return "user"
