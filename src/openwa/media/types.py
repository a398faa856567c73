"""Media types: what each message type accepts, detected from the bytes themselves."""

from __future__ import annotations

import re

import filetype

# Message type -> accepted content types (None: any type, as for documents).
ALLOWED: dict[str, frozenset[str] | None] = {
    "image": frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
    "video": frozenset(
        {"video/mp4", "video/3gpp", "video/quicktime", "video/webm", "video/x-matroska"}
    ),
    "audio": frozenset(
        {
            "audio/mpeg",
            "audio/ogg",
            "audio/mp4",
            "audio/aac",
            "audio/x-wav",
            "audio/wav",
            "audio/amr",
            "audio/x-flac",
            "audio/webm",
            "video/mp4",
        }
    ),
    # Voice notes are OGG/Opus on WhatsApp; other audio is converted (ffmpeg).
    "voice": frozenset(
        {
            "audio/ogg",
            "audio/mpeg",
            "audio/mp4",
            "audio/aac",
            "audio/x-wav",
            "audio/wav",
            "audio/amr",
            "audio/x-flac",
            "audio/webm",
            "video/mp4",
        }
    ),
    # Stickers are WebP; PNG and JPEG are converted (ffmpeg).
    "sticker": frozenset({"image/webp", "image/png", "image/jpeg"}),
    "document": None,
}

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/x-wav": "wav",
    "audio/wav": "wav",
    "audio/amr": "amr",
    "audio/x-flac": "flac",
    "audio/webm": "weba",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "text/plain": "txt",
}

OCTET_STREAM = "application/octet-stream"


def detect(head: bytes) -> str | None:
    """The content type the bytes say they are (from their first bytes), or None."""
    kind = filetype.guess(head)
    return kind.mime if kind is not None else None


def extension_for(mimetype: str) -> str:
    return _EXTENSIONS.get(mimetype.split(";")[0].strip().lower(), "bin")


# RFC 6838 `type/subtype` (restricted-name characters), with optional `; name=value`
# parameters (RFC 9110 tokens or quoted strings without control characters). Anything
# else (CR, LF, NUL, spaces, non-ASCII) would corrupt the Content-Type of a download.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MIMETYPE = re.compile(
    rf"{_NAME}/{_NAME}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*",
    re.ASCII,
)

# What a download may show inline: media a browser renders without running anything.
# Everything else (HTML, SVG, XML, PDF, ...) is served as an attachment.
INLINE_SAFE: frozenset[str] = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "audio/mpeg",
        "audio/ogg",
        "audio/mp4",
        "audio/aac",
        "audio/wav",
        "audio/x-wav",
        "audio/webm",
        "audio/x-flac",
        "video/mp4",
        "video/webm",
        "video/3gpp",
        "video/quicktime",
    }
)


def valid_mimetype(value: str) -> bool:
    """Whether `value` is a well-formed media type (RFC 6838), parameters allowed."""
    return _MIMETYPE.fullmatch(value) is not None


def essence(mimetype: str) -> str:
    """`type/subtype` of a media type, lower case, without its parameters."""
    return mimetype.split(";", 1)[0].strip().lower()
