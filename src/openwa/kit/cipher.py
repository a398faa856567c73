"""AES-256-GCM tokens for values kept encrypted at rest (`ENCRYPTION_KEY`).

A key is 32 random bytes written in base64url (`openwa keys gen-encryption-key` makes
one); a passphrase is refused, since nothing here stretches a weak one. Two subkeys are
derived from it with HKDF-SHA256: the AES key, and a key id (`kid`, 12 hex digits) that
names the key in every token without revealing anything about it, so a start or a
rotation can tell which key a value was written with.

A token is `enc:v1:<kid>:<base64url(nonce || ciphertext || tag)>`, with a fresh random
96-bit nonce per value. The caller's `context` (table, column and row) is the
associated data: a token copied to another row or column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
KEY_BYTES = 32
_NONCE_BYTES = 12
_KID_BYTES = 6


class CipherError(Exception):
    """A key that cannot be used, or a token that does not decrypt with it."""


def generate_key() -> str:
    """A new key in the form `ENCRYPTION_KEY` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def parse_key(text: str) -> bytes:
    """The 32 bytes of a base64url (or standard base64) key, padded or not."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise CipherError(
            "ENCRYPTION_KEY must be 32 random bytes in base64url (43 characters); "
            "make one with `openwa keys gen-encryption-key`"
        )
    return raw


def _derive(key: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(key)


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def token_kid(token: str) -> str:
    """The key id a token was written with."""
    return token[len(PREFIX) :].split(":", 1)[0]


class Cipher:
    """Encrypts and decrypts tokens under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise CipherError("an encryption key is 32 bytes")
        self.kid = _derive(key, b"openwa at-rest key id", _KID_BYTES).hex()
        self._aead = AESGCM(_derive(key, b"openwa at-rest aes-256-gcm", 32))
        self._prefix = f"{PREFIX}{self.kid}:"

    @classmethod
    def from_text(cls, text: str) -> Cipher:
        return cls(parse_key(text))

    def encrypt(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return self._prefix + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def decrypt(self, token: str, context: str) -> bytes:
        if not token.startswith(self._prefix):
            if is_token(token):
                raise CipherError(
                    f"a value was encrypted with key {token_kid(token)}, not with "
                    f"ENCRYPTION_KEY (key {self.kid})"
                )
            raise CipherError("not an encrypted value")
        body = token[len(self._prefix) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise CipherError(f"an encrypted value does not decrypt ({context})") from exc
