"""Object keys: `{sessionId}/{messageId}.{ext}`, from server-made parts only.

A client's file name is kept as metadata and never becomes part of a path, so no
name (`../`, absolute, encoded, NUL) can reach outside the store.
"""

from __future__ import annotations

import re

_PART_RE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")


def media_key(session_id: str, message_id: str, extension: str) -> str:
    for part in (session_id, message_id):
        if not _PART_RE.fullmatch(part):
            raise ValueError(f"unsafe key part {part!r}")
    if not _EXT_RE.fullmatch(extension):
        raise ValueError(f"unsafe extension {extension!r}")
    return f"{session_id}/{message_id}.{extension}"


# The one object of a session that is not a message's media: an engine's saved profile
# (whatsapp-web.js' browser profile), kept as long as the session is.
PROFILE_STEM = "webjs_profile"


def profile_key(session_id: str) -> str:
    return media_key(session_id, PROFILE_STEM, "zip")


def is_safe_part(part: str) -> bool:
    return bool(_PART_RE.fullmatch(part))


def is_safe_key(key: str) -> bool:
    session, _, rest = key.partition("/")
    stem, _, ext = rest.rpartition(".")
    return bool(_PART_RE.fullmatch(session) and _PART_RE.fullmatch(stem) and _EXT_RE.fullmatch(ext))


def safe_id(value: str) -> str:
    """An engine-given id made safe for a key part (real ids are already alphanumeric)."""
    cleaned = "".join(ch for ch in value if ch.isalnum() or ch == "_")[:100]
    return cleaned or "media"
