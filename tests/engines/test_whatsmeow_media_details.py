"""What a whatsmeow media send carries for WhatsApp to show before a download: sizes,
thumbnails, durations, a voice note's waveform; read from real files with the real
ffprobe and ffmpeg. A picture over MEDIA_MAX_IMAGE_DIMENSION gets no thumbnail (ffmpeg
not started), the decoder has `-max_pixels`, and only a few runs go at once (a stand-in
ffmpeg first on PATH counts them)."""

from __future__ import annotations

import base64
import math
import os
import shutil
import struct
import subprocess
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from neonize.proto import Neonize_pb2 as neonize

from openwa.engines import content as sent
from openwa.engines.bridge.engine import baileys_details as bridge_details
from openwa.engines.whatsmeow import translate
from openwa.media import details as media_details
from openwa.media.details import (
    THUMBNAIL_SIDE,
    WAVEFORM_BARS,
    MediaDetails,
    describe,
)
from openwa.media.probe import image_size
from tests.media.ffmpeg_spy import FfmpegSpy, make_spy
from tests.media.support import png
from tests.media.test_hostile_media import png_claiming

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"  # the real one, whatever a test puts on PATH


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


def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    subprocess.run(
        [
            *(FFMPEG, "-v", "error", "-f", "lavfi"),
            *("-i", "testsrc=size=160x120:rate=5:duration=2", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
    )
    return path


def test_a_video_has_its_size_length_and_a_thumbnail(tmp_path: Path) -> None:
    details = describe(clip(tmp_path), "video", "video/mp4")
    assert (details.width, details.height, details.seconds) == (160, 120, 2)
    assert thumbnail_size(details.thumbnail, tmp_path) == (72, 54)


@pytest.fixture
def spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FfmpegSpy:
    """A stand-in ffmpeg, first on PATH (ffprobe stays the real one)."""
    found = make_spy(tmp_path / "spy", FFMPEG, gated=True)
    monkeypatch.setenv("PATH", f"{found.path.parent}{os.pathsep}{os.environ['PATH']}")
    return found


def test_a_picture_over_the_cap_has_no_thumbnail_and_starts_no_ffmpeg(
    tmp_path: Path, spy: FfmpegSpy
) -> None:
    """An 83-byte PNG that claims 16000x16000: ffmpeg decoding it for a thumbnail took
    the worker's whole 512 MB (12000x12000: about 200 MB and over a second)."""
    spy.open_gate()
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(16000, 16000))
    details = describe(huge, "image", "image/png")
    assert spy.starts() == []
    assert details == MediaDetails(16000, 16000)
    wide = tmp_path / "wide.png"
    wide.write_bytes(png(144, 72))
    assert describe(wide, "image", "image/png", max_side=100) == MediaDetails(144, 72)
    assert describe(clip(tmp_path), "video", "video/mp4", max_side=100) == MediaDetails(160, 120, 2)
    assert spy.starts() == []

    # Within the cap: a thumbnail, from a decoder told the cap in pixels.
    details = describe(wide, "image", "image/png", max_side=144)
    assert thumbnail_size(details.thumbnail, tmp_path) == (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2)
    (start,) = spy.starts()
    argv = start["argv"]
    assert argv[argv.index("-max_pixels") + 1] == str(144 * 144)
    assert argv.index("-max_pixels") < argv.index("-i")


def test_only_a_few_runs_go_at_once(
    tmp_path: Path, spy: FfmpegSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's command threads are many (32): their ffmpeg runs wait their turn,
    and one that waits longer than a run may take is sent without its details."""
    paths = []
    for number in range(5):
        paths.append(tmp_path / f"{number}.png")
        paths[-1].write_bytes(png(32, 32))
    with ThreadPoolExecutor(max_workers=5) as threads:
        described = [threads.submit(describe, p, "image", "image/png") for p in paths]
        deadline = time.monotonic() + 20
        while len(spy.starts()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # time for a third to start, were it let
        assert len(spy.starts()) == 2
        spy.open_gate()
        results = [future.result(timeout=60) for future in described]
    assert all(result.thumbnail for result in results)
    assert len(spy.starts()) == 5
    assert spy.most_in_flight() == 2

    # Every turn taken, past the wait: no details, no ffmpeg, no failure.
    monkeypatch.setattr(media_details, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(media_details, "_SLOT_WAIT_S", 0.1)
    assert media_details._slots.acquire(timeout=1)
    assert describe(paths[0], "image", "image/png") == MediaDetails(32, 32)
    assert len(spy.starts()) == 5


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


async def test_baileys_is_handed_the_details_and_no_thumbnail_to_make(tmp_path: Path) -> None:
    """Baileys made a video's thumbnail itself, running ffmpeg on the file through a
    shell with none of these caps: it is handed ours, or `null` (then it makes none)."""
    video = await bridge_details(clip(tmp_path), "video", "video/mp4", 4096)
    assert (video["width"], video["height"], video["seconds"]) == (160, 120, 2)
    assert thumbnail_size(base64.b64decode(video["thumbnail"]), tmp_path) == (72, 54)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(16000, 16000))
    assert await bridge_details(huge, "image", "image/png", 4096) == {
        "thumbnail": None,
        "width": 16000,
        "height": 16000,
    }
