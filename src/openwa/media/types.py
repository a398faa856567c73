"""Media types: what each message type accepts, detected from the bytes themselves."""

from __future__ import annotations

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
