"""Key material: 256 random bits, shown once, stored only as a SHA-256 digest.

A slow password hash buys nothing for 256-bit random keys and would cost every
request; a digest also lets us find the key by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "owa_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# At most this many characters of a key's secret part are stored in clear, and never
# more than a quarter of it: `API_KEY` may be as short as 16 characters.
_SHOWN_CHARS = 4


def display_prefix(key: str) -> str:
    """Enough of the key to recognise it in a list, too little to narrow a guess.

    `owa_` is a marker, not part of the secret: it is kept, followed by at most four
    characters of the secret (four of 43 for a generated key). Any other key (an
    `API_KEY` of the operator's) shows at most min(4, a quarter of its length).
    """
    marker = KEY_PREFIX if key.startswith(KEY_PREFIX) else ""
    secret = key[len(marker) :]
    return marker + secret[: min(_SHOWN_CHARS, len(secret) // 4)]
