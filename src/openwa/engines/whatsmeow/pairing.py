"""Which stored device a pairing made, told by the keys its QR code showed.

whatsmeow stores a newly linked device before it tells of the link: a worker or API
process that ended between the two left a linked device in the store and no JID in our
auth row. On PostgreSQL the store is shared by every session, so the device cannot be
told by where it is (as a session's own SQLite file tells it); it is told by its noise
key instead. Each QR code whatsmeow makes carries the device's public noise key
(`...#ref,noise,identity,adv,type`), and the stored device row holds the private key it
comes from. The pairing code path keeps the same noise key, and still shows QR codes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

_KEY_BYTES = 32


# The auth row's key for the noise key (base64) of the device an unlinked session's last
# QR code would link (`WhatsmeowClient._note_pairing`).
PAIRING_NOISE_KEY = "pairingNoiseKey"


def _key(text: object) -> bytes | None:
    """A 32-byte key from its base64 text; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == _KEY_BYTES else None


def qr_noise_key(code: str) -> bytes | None:
    """The public noise key a whatsmeow QR code carries; None for any other text."""
    fields = code.rpartition("#")[2].split(",")
    return _key(fields[1]) if len(fields) >= 4 else None


def pairing_noise_key(auth: dict[str, object]) -> bytes | None:
    """The noise key an auth row keeps for an unlinked session, if any."""
    return _key(auth.get(PAIRING_NOISE_KEY))


def pairing_record(key: bytes) -> dict[str, object]:
    """The auth row of an unlinked session whose last QR code showed `key`."""
    return {PAIRING_NOISE_KEY: base64.b64encode(key).decode()}


def public_noise_key(private: bytes) -> bytes | None:
    """The public key of a stored private noise key (Curve25519, as whatsmeow makes it)."""
    if len(private) != _KEY_BYTES:
        return None
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def device_with_noise_key(devices: Iterable[tuple[str, bytes]], public: bytes) -> str | None:
    """The JID of the device (`(jid, private noise key)`) whose public key is `public`."""
    for jid, private in devices:
        if public_noise_key(bytes(private)) == public:
            return jid
    return None
