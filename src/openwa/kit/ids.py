"""Server-made identifiers: a type prefix and a ULID, so ids sort by creation time."""

from __future__ import annotations

import os
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = "[0-9A-HJKMNP-TV-Z]{26}"
SESSION_ID_RE = re.compile(rf"^ses_{ULID_PATTERN}$")


def ulid(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, in Crockford base32 (26 characters)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def whatsapp_message_id() -> str:
    """A message id in WhatsApp Web's form (3EB0 and 20 hex digits), made at acceptance."""
    return "3EB0" + os.urandom(10).hex().upper()
