"""Phone numbers as WhatsApp knows them: international digits, no `+`."""

from __future__ import annotations

import phonenumbers

from openwa.errors import InvalidChatId


def normalize_phone(raw: str) -> str:
    """`+62 812-3456-7890` -> `6281234567890`; a number that cannot exist is refused."""
    # ASCII digits only: str.isdigit() also takes other scripts' digits, which
    # phonenumbers accepts but WhatsApp addresses never contain.
    digits = "".join(ch for ch in raw if ch in "0123456789")
    if any(ch.isdigit() and ch not in "0123456789" for ch in raw):
        raise InvalidChatId(details={"phoneNumber": raw, "reason": "digits must be 0-9"})
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidChatId(details={"phoneNumber": raw, "reason": str(exc)}) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidChatId(details={"phoneNumber": raw, "reason": "not a possible number"})
    return digits
