"""Standard Webhooks signing (https://www.standardwebhooks.com/).

Secrets are `whsec_` + base64 of 24 to 64 random bytes; the signature is
`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")). During a rotation a
delivery carries one signature per valid secret, space-separated, so a receiver with
either secret verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
MIN_BYTES, MAX_BYTES = 24, 64


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret; ValueError when it is not in the Standard Webhooks form."""
    if not secret.startswith(PREFIX):
        raise ValueError("must start with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("must be whsec_ followed by base64") from exc
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise ValueError(f"must encode {MIN_BYTES} to {MAX_BYTES} bytes")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)
