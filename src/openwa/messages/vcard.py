"""vCard 3.0 for contact cards, escaped per RFC 2426 so a name cannot break the card."""

from __future__ import annotations


def escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(";", "\\;")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def vcard(name: str, phone_digits: str) -> str:
    """A card WhatsApp shows with a "Message" button (`waid` is the number's digits)."""
    escaped = escape(name)
    return "\r\n".join(
        [
            "BEGIN:VCARD",
            "VERSION:3.0",
            f"N:;{escaped};;;",
            f"FN:{escaped}",
            f"TEL;type=CELL;type=VOICE;waid={phone_digits}:+{phone_digits}",
            "END:VCARD",
        ]
    )
