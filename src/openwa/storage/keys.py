"""Object keys: `{sessionId}/{stem}.{ext}`, from server-made parts only.

A client's file name is kept as metadata and never becomes part of a path, so no
name (`../`, absolute, encoded, NUL) can reach outside the store. Nor does an id that
a WhatsApp client chose: an inbound message's id is its sender's (a custom client
sends any, another message's included), so its media is not stored under it.

Each kind of object under a session's prefix has stems no other kind can have, so no
key of one kind is ever the key of another:

- a send's media: our id of the message (`3EB0` and 20 hex digits, `kit/ids.py`);
- inbound media: `in_` and a ULID made when it is stored;
- whatsapp-web.js' saved profile: `webjs_profile`.

A message refers to its media by the key in its row (`media_key`, `content.media.key`):
downloads, retention and the media sweep read that, never a key made from its id.
"""

from __future__ import annotations

import re

from openwa.kit.ids import WHATSAPP_MESSAGE_ID_RE, ulid

_PART_RE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")

INBOUND_PREFIX = "in_"
# The one object of a session that is not a message's media: an engine's saved profile
# (whatsapp-web.js' browser profile), kept as long as the session is.
PROFILE_STEM = "webjs_profile"


def _key(session_id: str, stem: str, extension: str) -> str:
    for part in (session_id, stem):
        if not _PART_RE.fullmatch(part):
            raise ValueError(f"unsafe key part {part!r}")
    if not _EXT_RE.fullmatch(extension):
        raise ValueError(f"unsafe extension {extension!r}")
    return f"{session_id}/{stem}.{extension}"


def sent_media_key(session_id: str, message_id: str, extension: str) -> str:
    """Where a send's media is kept: under our id of the message, made at acceptance."""
    if not WHATSAPP_MESSAGE_ID_RE.fullmatch(message_id):
        raise ValueError(f"not an id we made {message_id!r}")
    return _key(session_id, message_id, extension)


def inbound_media_key(session_id: str, extension: str) -> str:
    """A new key for media that came with an engine's report (an inbound message, or
    one sent from the account's phone), whatever the message's id."""
    return _key(session_id, INBOUND_PREFIX + ulid(), extension)


def profile_key(session_id: str) -> str:
    return _key(session_id, PROFILE_STEM, "zip")


def is_safe_part(part: str) -> bool:
    return bool(_PART_RE.fullmatch(part))


def is_safe_key(key: str) -> bool:
    """A key OpenWA would make (keys made before inbound media had keys of its own,
    from the message's id, are of the same form)."""
    session, _, rest = key.partition("/")
    stem, _, ext = rest.rpartition(".")
    return bool(_PART_RE.fullmatch(session) and _PART_RE.fullmatch(stem) and _EXT_RE.fullmatch(ext))
