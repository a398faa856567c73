"""The one ffmpeg demuxer that may read each type of file we accept.

ffmpeg left to guess reads far more than media: a file that starts as an MP3 (an ID3
tag) and goes on as an HLS playlist is opened as the playlist, and ffmpeg then fetches
the addresses it names, past every guard we put on outgoing connections. So every run
names its demuxer, and nothing else is ever probed.
"""

from __future__ import annotations

# What conversions may read (voice notes, stickers): the detected type -> its demuxer.
DEMUXERS: dict[str, str] = {
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/mp4": "mov",
    "video/mp4": "mov",
    "audio/aac": "aac",
    "audio/x-wav": "wav",
    "audio/wav": "wav",
    "audio/amr": "amr",
    "audio/x-flac": "flac",
    "audio/webm": "matroska",
    "image/png": "png_pipe",
    "image/jpeg": "jpeg_pipe",
}

# What the details of a send (sizes, thumbnails, lengths, waveforms) may read: the
# above, and the other image and video types a send accepts.
DETAIL_DEMUXERS: dict[str, str] = {
    **DEMUXERS,
    "image/webp": "webp_pipe",
    "image/gif": "gif",
    "video/3gpp": "mov",
    "video/quicktime": "mov",
    "video/webm": "matroska",
    "video/x-matroska": "matroska",
}


def demuxer_for(mimetype: str) -> str | None:
    """The demuxer the details of a send may read a type with (its parameters, such as
    `; codecs=opus`, ignored)."""
    return DETAIL_DEMUXERS.get(mimetype.partition(";")[0].strip().lower())
