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


def display_prefix(key: str) -> str:
    """Enough of the key to recognise it in a list, too little to use it."""
    return key[:12]
