"""What a whatsmeow media send carries for WhatsApp to show before a download: sizes,
thumbnails, durations, a voice note's waveform; read from real files with the real
ffprobe and ffmpeg."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest
from neonize.proto import Neonize_pb2 as neonize

from openwa.engines import content as sent
from openwa.engines.whatsmeow import translate
from openwa.engines.whatsmeow.media_details import (
    THUMBNAIL_SIDE,
    WAVEFORM_BARS,
    MediaDetails,
    describe,
)
from openwa.media.probe import image_size
from tests.media.support import png

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def thumbnail_size(jpeg: bytes | None, tmp_path: Path) -> tuple[int, int] | None:
    assert jpeg is not None
    assert jpeg.startswith(b"\xff\xd8")
    path = tmp_path / "thumbnail.jpg"
    path.write_bytes(jpeg)
    return image_size(path, "image/jpeg")


def test_an_image_has_its_size_and_a_small_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(png(144, 72))
    details = describe(path, "image", "image/png")
    assert (details.width, details.height) == (144, 72)
    assert thumbnail_size(details.thumbnail, tmp_path) == (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2)


def test_a_video_has_its_size_length_and_a_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi"),
            *("-i", "testsrc=size=160x120:rate=5:duration=2", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
    )
    details = describe(path, "video", "video/mp4")
    assert (details.width, details.height, details.seconds) == (160, 120, 2)
    assert thumbnail_size(details.thumbnail, tmp_path) == (72, 54)


def test_a_voice_note_has_its_length_and_waveform(tmp_path: Path) -> None:
    """Loud for a second, then quiet for a second: the bars say so."""
    path = tmp_path / "note.wav"
    rate = 8000
    samples = [int((20000 if i < rate else 2000) * math.sin(i / 5)) for i in range(2 * rate)]
    with wave.open(str(path), "wb") as note:
        note.setnchannels(1)
        note.setsampwidth(2)
        note.setframerate(rate)
        note.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    details = describe(path, "voice", "audio/wav")
    assert details.seconds == 2
    assert details.waveform is not None
    assert len(details.waveform) == WAVEFORM_BARS
    bars = list(details.waveform)
    assert max(bars) == 100
    assert min(bars[:30]) > 80
    assert max(bars[34:]) < 20


def test_unreadable_media_is_sent_without_details(tmp_path: Path) -> None:
    path = tmp_path / "not-a-video.mp4"
    path.write_bytes(b"plain text, no video in here")
    assert describe(path, "video", "video/mp4") == MediaDetails()
    assert describe(path, "document", "application/pdf") == MediaDetails()


def uploaded() -> neonize.UploadResponse:
    return neonize.UploadResponse(url="https://mmg.whatsapp.net/x", FileLength=3)


def test_the_details_are_in_the_message_sent() -> None:
    file = sent.MediaFile("k", "image/jpeg", 3)
    shown = MediaDetails(width=640, height=480, thumbnail=b"\xff\xd8jpeg")
    image = translate.media_message(sent.Image(file, "look"), uploaded(), shown).imageMessage
    assert (image.width, image.height, image.JPEGThumbnail) == (640, 480, b"\xff\xd8jpeg")
    voice_file = sent.MediaFile("k", "audio/ogg; codecs=opus", 3)
    heard = MediaDetails(seconds=7, waveform=bytes(range(64)))
    note = translate.media_message(sent.Voice(voice_file), uploaded(), heard).audioMessage
    assert (note.PTT, note.seconds, note.waveform) == (True, 7, bytes(range(64)))
    bare = translate.media_message(sent.Image(file, None), uploaded()).imageMessage
    assert not bare.HasField("width")
    assert not bare.HasField("JPEGThumbnail")


def test_a_file_that_hides_a_playlist_reads_nothing_it_names(tmp_path: Path) -> None:
    """An "MP3" (an ID3 tag) that goes on as an HLS playlist: ffmpeg left to guess reads
    it as the playlist and then the files it names, such as another account's voice
    note, whose length and waveform went out as this one's. Named as MP3 it is read as
    one, from itself alone."""
    other = tmp_path / "someone-elses.m4a"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3"),
            *("-c:a", "aac", str(other)),
        ],
        check=True,
    )
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{other}\n#EXT-X-ENDLIST\n"
    path = tmp_path / "note.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + playlist.encode())  # an empty tag
    assert describe(path, "voice", "audio/mpeg") == MediaDetails()


def test_a_type_without_a_known_demuxer_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.bin"
    path.write_bytes(b"\x00" * 64)
    assert describe(path, "video", "video/x-unknown") == MediaDetails()
