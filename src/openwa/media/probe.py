"""Cheap looks at media headers, made before any decoder runs.

A decoder allocates what a header claims: a 2 MB PNG that says 16000x16000 costs ffmpeg
gigabytes of memory and a minute of CPU. Reading the few header bytes in Python first
lets a hostile file be refused before it reaches a decoder at all.
"""

from __future__ import annotations

import struct
from pathlib import Path

# JPEG start-of-frame markers (the ones that carry the frame size): C0-CF but C4, C8, CC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers that stand alone (no length after them).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_JPEG_SCAN_LIMIT = 1 << 20  # a frame header further in than 1 MB is no photo of ours
_MP4_MAX_BOXES = 64


def image_size(path: Path, mimetype: str) -> tuple[int, int] | None:
    """(width, height) the image's header claims, or None when the header is unreadable."""
    with path.open("rb") as file:
        if mimetype == "image/jpeg":
            return _jpeg_size(file.read(_JPEG_SCAN_LIMIT))
        head = file.read(64)
    if mimetype == "image/png":
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        return None
    if mimetype == "image/gif":
        if head[:4] == b"GIF8" and len(head) >= 10:
            width, height = struct.unpack("<HH", head[6:10])
            return width, height
        return None
    if mimetype == "image/webp":
        return _webp_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        at += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def mp4_index_first(path: Path) -> bool:
    """Whether an MP4/MOV file has its index (`moov`) before its data (`mdat`).

    ffmpeg reads our inputs from a pipe, where it cannot seek back: an MP4 whose index
    comes last decodes to nothing, so such a file is refused with a clear reason instead.
    """
    with path.open("rb") as file:
        for _ in range(_MP4_MAX_BOXES):
            header = file.read(8)
            if len(header) < 8:
                return False
            size, kind = struct.unpack(">I4s", header)
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if size == 1:
                large = file.read(8)
                if len(large) < 8:
                    return False
                size = struct.unpack(">Q", large)[0] - 8
            elif size == 0:  # the box runs to the end of the file
                return False
            if size < 8:
                return False
            file.seek(size - 8, 1)
    return False
