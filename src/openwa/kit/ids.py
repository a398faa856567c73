"""Server-made identifiers: a type prefix and a ULID, so ids sort by creation time."""

from __future__ import annotations

import os
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = "[0-9A-HJKMNP-TV-Z]{26}"
SESSION_ID_RE = re.compile(rf"^ses_{ULID_PATTERN}$")
# What `whatsapp_message_id` makes (our ids of the messages we send).
WHATSAPP_MESSAGE_ID_RE = re.compile(r"^3EB0[0-9A-F]{20}$")


# Two characters per 10 bits: 13 lookups per id instead of 26 (every request and every
# event makes one).
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_PAIR_SHIFTS = range(120, -10, -10)


def ulid(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, in Crockford base32 (26 characters)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def whatsapp_message_id() -> str:
    """A message id in WhatsApp Web's form (3EB0 and 20 hex digits), made at acceptance."""
    return "3EB0" + os.urandom(10).hex().upper()
