"""Cheap looks at media headers, made before any decoder runs.

A decoder allocates what a header claims: a 2 MB PNG that says 16000x16000 costs ffmpeg
gigabytes of memory and a minute of CPU. Reading the few header bytes in Python first
lets a hostile file be refused before it reaches a decoder at all.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

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


_OGG_PAGE = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, ...
_OGG_BOS = 0x02  # the page opens a logical stream


def _ogg_page(file: BinaryIO) -> tuple[int, int, int, bytes] | None:
    """(flags, serial, granule position, body) of the Ogg page at the file's position (a
    body is at most 255 segments of 255 bytes), or None when no whole page is there."""
    header = file.read(_OGG_PAGE.size)
    if len(header) < _OGG_PAGE.size:
        return None
    capture, version, flags, granule, serial, _sequence, _crc, segments = _OGG_PAGE.unpack(header)
    if capture != b"OggS" or version != 0:
        return None
    table = file.read(segments)
    length = sum(table)
    body = file.read(length)
    if len(table) < segments or len(body) < length:
        return None
    return flags, serial, granule, body


_OPUS_RATE = 48_000  # an Opus stream's granule positions count 48 kHz samples


def ogg_opus_seconds(path: Path) -> float | None:
    """How long an Ogg file that holds Opus alone plays, as WhatsApp's voice notes are;
    None when it is not that. `audio/ogg` names the container only: FLAC, Vorbis or
    Speex in it, a video stream beside the Opus, or a second stream chained after it,
    is not this. Every page is read (headers and bodies, in order): the first opens the
    one stream with an Opus header (`OpusHead`), every other belongs to it and opens
    none, and the file ends where a page ends. Its length is the last granule position
    past the header's pre-skip, which bounds what a decoder of it (Baileys' waveform)
    reads, as `MEDIA_MAX_DURATION_S` bounds a conversion."""
    with path.open("rb") as file:
        first = _ogg_page(file)
        if first is None:
            return None
        flags, serial, _granule, body = first
        if not flags & _OGG_BOS or not body.startswith(b"OpusHead") or len(body) < 12:
            return None
        pre_skip = int.from_bytes(body[10:12], "little")
        last, pages, at = 0, 1, file.tell()
        while (page := _ogg_page(file)) is not None:
            flags, page_serial, granule, _body = page
            if page_serial != serial or flags & _OGG_BOS:
                return None
            if granule >= 0:
                last = max(last, granule)
            pages, at = pages + 1, file.tell()
        file.seek(at)
        if pages < 2 or file.read(1):
            return None  # its header alone, or something after its last page
    return max(0, last - pre_skip) / _OPUS_RATE


class NotMp4(ValueError):
    """The file's box structure is not a well-formed MP4 we can reorder."""


_MP4_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})
_MOOV_MAX = 16 << 20  # an index over 16 MB is no voice note


def _top_boxes(file: BinaryIO, length: int) -> list[tuple[bytes, int, int]]:
    """(kind, start, size) of each top-level box; NotMp4 when they do not tile the file."""
    boxes: list[tuple[bytes, int, int]] = []
    at = 0
    while at < length:
        if len(boxes) >= _MP4_MAX_BOXES:
            raise NotMp4("too many top-level boxes")
        file.seek(at)
        header = file.read(16)
        if len(header) < 8:
            raise NotMp4("truncated box header")
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1:
            if len(header) < 16:
                raise NotMp4("truncated box header")
            (size,) = struct.unpack(">Q", header[8:16])
        elif size == 0:
            size = length - at
        if size < 8 or at + size > length:
            raise NotMp4("box size out of the file")
        boxes.append((kind, at, size))
        at += size
    return boxes


# Boxes nest about five deep in a real index (moov/trak/mdia/minf/stbl); a crafted one
# nests eight bytes a level, deeper than Python's recursion limit (an error, not a 415).
_MP4_MAX_DEPTH = 16


def _shift_chunk_offsets(
    moov: bytearray, start: int, end: int, move: Callable[[int], int], depth: int = 0
) -> None:
    """Rewrite every `stco`/`co64` chunk offset under moov[start:end] through `move`."""
    if depth > _MP4_MAX_DEPTH:
        raise NotMp4("boxes nested too deeply")
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", moov, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                raise NotMp4("truncated box header")
            (size,) = struct.unpack_from(">Q", moov, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise NotMp4("box size out of its parent")
        body = at + header
        if kind in _MP4_CONTAINERS:
            _shift_chunk_offsets(moov, body, at + size, move, depth + 1)
        elif kind in (b"stco", b"co64"):
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            if body + 8 > at + size:
                raise NotMp4("truncated chunk offset table")
            (count,) = struct.unpack_from(">I", moov, body + 4)
            if body + 8 + count * width > at + size:
                raise NotMp4("chunk offset table out of its box")
            for entry in range(body + 8, body + 8 + count * width, width):
                (offset,) = struct.unpack_from(fmt, moov, entry)
                moved = move(offset)
                if moved >= 1 << (8 * width):
                    raise NotMp4("chunk offset overflows")
                struct.pack_into(fmt, moov, entry, moved)
        at += size


def mp4_move_index_first(source: Path, target: Path) -> bool:
    """Write to `target` the MP4 `source` with its index (`moov`) before its data.

    ffmpeg reads our inputs from a pipe, where it cannot seek back: an MP4 whose index
    comes after its data (as phones often write them) would decode to nothing. The boxes
    are reordered in Python (the chunk offsets in the index shifted to match), as
    `-movflags +faststart` would. False when the index is already first (`target` is not
    written); NotMp4 when the structure is not one we can reorder.
    """
    length = source.stat().st_size
    with source.open("rb") as file:
        boxes = _top_boxes(file, length)
        kinds = [kind for kind, _, _ in boxes]
        if b"moov" not in kinds or b"mdat" not in kinds:
            raise NotMp4("no moov or no mdat box")
        moov_at = kinds.index(b"moov")
        data_at = kinds.index(b"mdat")
        if moov_at < data_at:
            return False
        _, moov_start, moov_size = boxes[moov_at]
        if moov_size > _MOOV_MAX:
            raise NotMp4("index too large")
        file.seek(moov_start)
        moov = bytearray(file.read(moov_size))
        data_start = boxes[data_at][1]

        def move(offset: int) -> int:
            # Everything from the first mdat up to the old moov moves down by moov's size.
            return offset + moov_size if data_start <= offset < moov_start else offset

        header = 16 if struct.unpack_from(">I", moov)[0] == 1 else 8
        _shift_chunk_offsets(moov, header, moov_size, move)
        order = [*boxes[:data_at], None, *(b for b in boxes[data_at:] if b[0] != b"moov")]
        with target.open("wb") as out:
            for box in order:
                if box is None:
                    out.write(moov)
                    continue
                file.seek(box[1])
                left = box[2]
                while left > 0:
                    chunk = file.read(min(left, 1 << 20))
                    if not chunk:
                        raise NotMp4("file changed while read")
                    out.write(chunk)
                    left -= len(chunk)
    return True
