"""Poll votes whose options came as hashes: named from the poll as it was stored.

WhatsApp names a vote's options by the SHA-256 of their names; an engine that did not
see the poll itself (a restarted whatsmeow worker) passes the hashes on, and the stored
poll's options say which names they are.
"""

from __future__ import annotations

import hashlib
from typing import Any


def option_names(content: dict[str, Any] | None, hashes: list[str]) -> list[str] | None:
    """The option names behind `hashes` in a stored poll's content; None when the poll
    is unknown or a hash names none of its options."""
    poll = (content or {}).get("poll")
    options = poll.get("options") if isinstance(poll, dict) else None
    if not isinstance(options, list):
        return None
    by_hash = {
        hashlib.sha256(option.encode()).hexdigest(): option
        for option in options
        if isinstance(option, str)
    }
    names = [by_hash.get(digest.lower()) for digest in hashes]
    return None if None in names else [name for name in names if name is not None]
