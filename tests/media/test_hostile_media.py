"""Hostile media against ffmpeg: no file but its input is read, and every cap holds.

- a `voice` upload that is an ID3 header followed by an HLS playlist naming another
  session's voice note, an absolute path and a sentinel file: refused, and none of
  those files is read (their access times stay where the test put them);
- images are measured from their header and refused over MEDIA_MAX_IMAGE_DIMENSION
  before ffmpeg runs; audio at MEDIA_MAX_DURATION_S or longer is refused;
- an OGG voice note goes as it is only when it holds Opus alone: FLAC in OGG, or Opus
  beside a second stream, is converted (and capped) like any other audio;
- ffmpeg runs with the limits of the settings (seen from inside the process, through a
  stand-in binary at FFMPEG_PATH), is killed at MEDIA_CONVERSION_TIMEOUT_S, and never
  more than MEDIA_CONVERSION_CONCURRENCY run at once;
- no answer carries ffmpeg's stderr or a path of the server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from openwa.media.probe import NotMp4, mp4_move_index_first, ogg_opus_seconds
from tests.fixtures.app import Api, wait_for
from tests.media.conftest import MediaApps, MediaStore
from tests.media.ffmpeg_spy import FfmpegSpy, make_spy
from tests.media.support import (
    data_of,
    download,
    error_of,
    plus,
    png,
    post_multipart,
    ready_pair,
    require_ffmpeg,
    stored_key,
    tone,
)

MB = 1024 * 1024


def synth(directory: Path, name: str, *args: str) -> bytes:
    """A small media file made by ffmpeg now (`args` are ffmpeg's input and output options)."""
    out = directory / f"{secrets.token_hex(4)}-{name}"
    command = [require_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", *args, str(out)]
    subprocess.run(command, check=True, timeout=60)
    return out.read_bytes()


def silence_flac(directory: Path, seconds: int) -> bytes:
    return synth(
        directory,
        "silence.flac",
        *("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", str(seconds), "-c:a", "flac"),
    )


def png_claiming(width: int, height: int, rows: int = 4096) -> bytes:
    """A PNG whose header claims `width` x `height` over `rows` bytes of pixel data
    (zeros, so that a whole 4096x4096 image compresses to about 50 KB)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * rows)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


async def send(
    api: Api, session: str, to: dict[str, Any], content: bytes, type_: str, name: str, mime: str
) -> httpx.Response:
    return await post_multipart(
        api, session, content, filename=name, content_type=mime, chatId=plus(to), type=type_
    )


async def spied(
    media_apps: MediaApps,
    store: MediaStore,
    tmp_path: Path,
    *,
    gated: bool = False,
    **settings: Any,
) -> tuple[Api, FfmpegSpy, dict[str, Any]]:
    """An app whose ffmpeg is the stand-in, with sessions alice and bob ready; bob."""
    spy = make_spy(tmp_path / "spy", require_ffmpeg(), gated=gated)
    api = await media_apps.start(store, ffmpeg_path=str(spy.path), **settings)
    _, bob = await ready_pair(api)
    return api, spy, bob


def assert_no_leak(response: httpx.Response, api: Api) -> None:
    """No server path and no ffmpeg output in an answer."""
    text = response.text
    assert str(api.settings.data_dir) not in text
    assert str(api.settings.data_dir.resolve()) not in text
    for word in ("stderr", "pipe:", "Invalid data", "ffmpeg version"):
        assert word not in text, (word, text)


def assert_boxed(spy: FfmpegSpy, api: Api, *demuxers: str) -> None:
    """Every ffmpeg run read stdin only, through one of `demuxers`, with no path of ours."""
    starts = spy.starts()
    assert starts
    tmp = api.settings.data_dir.resolve() / "tmp"
    for start in starts:
        argv: list[str] = start["argv"]
        assert argv[argv.index("-protocol_whitelist") + 1] == "pipe"
        assert argv[argv.index("-i") + 1] == "pipe:0"
        assert argv[argv.index("-f") + 1] in demuxers
        assert argv.count("-i") == 1
        assert not [a for a in argv if str(api.settings.data_dir) in a or a.startswith("/")]
        assert argv[-1].startswith("file:")
        assert "/" not in argv[-1]
        # Its working directory is an empty one of its own under DATA_DIR/tmp.
        assert Path(start["cwd"]).parent == tmp
        assert start["entries"] == []


async def test_id3_playlist_reads_no_other_file(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    ffmpeg = require_ffmpeg()
    spy = make_spy(tmp_path / "spy", ffmpeg)
    api = await media_apps.start(local_store, ffmpeg_path=str(spy.path))
    alice, bob = await ready_pair(api)

    # Bob's private voice note, stored under his session.
    note = data_of(
        await send(api, "bob", alice, tone(tmp_path, "wav"), "voice", "n.wav", "audio/x-wav"), 202
    )
    bobs_file = local_store.root / bob["id"] / f"{note['id']}.ogg"

    async def stored() -> bool:
        if not bobs_file.is_file():
            return False
        # Alice's message written: the inbound copy (which reads bob's file) is over
        # once its row is.
        found = await api.request("GET", f"/api/sessions/{alice['id']}/messages/{note['id']}")
        return found.status_code == 200 and bool(found.json()["data"].get("media"))

    await wait_for(stored, bool, 15, "bob's voice note stored at both ends")
    assert (local_store.root / await stored_key(api, alice["id"], note["id"])).is_file()
    sentinel = tmp_path / "sentinel.wav"
    sentinel.write_bytes(tone(tmp_path, "wav"))
    targets = [bobs_file, sentinel]
    for target in targets:
        os.utime(target, (0, target.stat().st_mtime))  # any read would move atime

    playlist = "\n".join(
        [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            "#EXT-X-TARGETDURATION:10",
            "#EXTINF:10,",
            f"../media/{bob['id']}/{note['id']}.ogg",
            "#EXTINF:10,",
            str(bobs_file),
            "#EXTINF:10,",
            f"file:{sentinel}",
            "#EXTINF:10,",
            str(sentinel),
            "#EXT-X-ENDLIST",
            "",
        ]
    ).encode()
    hostile = b"ID3\x03\x00\x00\x00\x00\x00\x00" + playlist
    before = local_store.objects()

    response = await send(api, "alice", bob, hostile, "voice", "note.mp3", "audio/mpeg")
    error_of(response, 422, "ENGINE_ERROR")
    assert_no_leak(response, api)
    assert_boxed(spy, api, "wav", "mp3")  # bob's note, then the hostile file
    last = spy.starts()[-1]["argv"]
    assert last[last.index("-f") + 1] == "mp3"
    assert local_store.objects() == before
    for target in targets:
        assert target.stat().st_atime == 0, f"{target} was read"


async def test_image_dimensions_are_capped_before_decoding(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api, spy, bob = await spied(media_apps, local_store, tmp_path, media_max_image_dimension=64)

    # At the cap: converted.
    sent = data_of(await send(api, "alice", bob, png(64, 48), "sticker", "s.png", "image/png"), 202)
    assert sent["media"]["mimetype"] == "image/webp"
    assert_boxed(spy, api, "png_pipe")
    runs = len(spy.starts())

    # One side over the cap, a huge header over a few bytes, a JPEG over it: refused,
    # and ffmpeg never started for any of them.
    cases = [
        (png(65, 8), "image/png", 65, 8),
        (png_claiming(16000, 16000), "image/png", 16000, 16000),
        (
            synth(
                tmp_path, "wide.jpg", "-f", "lavfi", "-i", "color=c=red:s=80x16", "-frames:v", "1"
            ),
            "image/jpeg",
            80,
            16,
        ),
    ]
    for content, mime, width, height in cases:
        response = await send(api, "alice", bob, content, "sticker", "s.img", mime)
        error = error_of(response, 413, "PAYLOAD_TOO_LARGE", (mime, width, height))
        assert error["details"]["limit"] == "MEDIA_MAX_IMAGE_DIMENSION"
        assert (error["details"]["width"], error["details"]["height"]) == (width, height)
        assert error["details"]["maxDimension"] == 64
    assert len(spy.starts()) == runs

    # A JPEG within the cap goes through, measured by the same header reader.
    small = synth(tmp_path, "ok.jpg", "-f", "lavfi", "-i", "color=c=blue:s=48x32", "-frames:v", "1")
    data_of(await send(api, "alice", bob, small, "sticker", "s.jpg", "image/jpeg"), 202)
    assert_boxed(spy, api, "png_pipe", "jpeg_pipe")


async def test_huge_png_is_refused_under_the_default_cap(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api, spy, bob = await spied(media_apps, local_store, tmp_path)
    response = await send(
        api, "alice", bob, png_claiming(16000, 16000), "sticker", "s.png", "image/png"
    )
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["maxDimension"] == 4096
    assert spy.starts() == []


async def test_long_audio_is_refused_and_limits_reach_ffmpeg(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api, spy, bob = await spied(
        media_apps,
        local_store,
        tmp_path,
        media_max_duration_s=5,
        media_conversion_cpu_s=7,
        media_conversion_memory_mb=900,
        max_media_bytes=8 * MB,
    )

    long_one = silence_flac(tmp_path, 12)
    response = await send(api, "alice", bob, long_one, "voice", "long.flac", "audio/flac")
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit"] == "MEDIA_MAX_DURATION_S"
    assert error["details"]["maxDurationS"] == 5
    assert_no_leak(response, api)

    short = silence_flac(tmp_path, 2)
    sent = data_of(await send(api, "alice", bob, short, "voice", "s.flac", "audio/flac"), 202)
    assert sent["media"]["mimetype"] == "audio/ogg"

    assert_boxed(spy, api, "flac")
    for start in spy.starts():
        argv = start["argv"]
        assert argv[argv.index("-t") + 1] == "5"  # decoding stops at the cap
        assert start["limits"] == {
            "RLIMIT_AS": 900 * MB,
            "RLIMIT_CPU": 7,
            "RLIMIT_FSIZE": 8 * MB,
        }
        # Its own process group: the timeout kills ffmpeg and anything it started.
        assert start["pgid"] == start["pid"]


def ogg(directory: Path, name: str, seconds: int, *codec: str) -> bytes:
    """`seconds` of a sine in an OGG container, in the codec (and streams) of `codec`."""
    sine = ("-f", "lavfi", "-i", f"sine=duration={seconds}")
    return synth(directory, name, *sine, *codec, "-f", "ogg")


OPUS = ("-c:a", "libopus")
FLAC = ("-c:a", "flac")
# Opus first, FLAC beside it: the first page says OpusHead, the second opens another stream.
OPUS_AND_FLAC = ("-map", "0:a", "-map", "0:a", "-c:a:0", "libopus", "-c:a:1", "flac")


async def test_ogg_voice_notes_that_are_not_opus_alone_are_converted(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api, spy, bob = await spied(media_apps, local_store, tmp_path, media_max_duration_s=5)

    for name, codec in (("flac.ogg", FLAC), ("opus-and-flac.ogg", OPUS_AND_FLAC)):
        content = ogg(tmp_path, name, 2, *codec)
        sent = data_of(await send(api, "alice", bob, content, "voice", name, "audio/ogg"), 202)
        assert sent["media"]["mimetype"] == "audio/ogg"
        path = tmp_path / f"stored-{name}"
        path.write_bytes((await download(api, "alice", sent["id"])).content)
        assert ogg_opus_seconds(path) is not None, f"{name} was stored as it came"
    assert_boxed(spy, api, "ogg")
    runs = len(spy.starts())
    assert runs == 2

    # Converted, so capped: FLAC in OGG longer than MEDIA_MAX_DURATION_S is refused.
    long_one = ogg(tmp_path, "long.ogg", 12, *FLAC)
    response = await send(api, "alice", bob, long_one, "voice", "long.ogg", "audio/ogg")
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit"] == "MEDIA_MAX_DURATION_S"
    assert len(spy.starts()) == runs + 1

    # OGG/Opus goes as it is: the same bytes, and ffmpeg not run.
    opus = ogg(tmp_path, "opus.ogg", 2, *OPUS)
    sent = data_of(await send(api, "alice", bob, opus, "voice", "o.ogg", "audio/ogg"), 202)
    assert sent["media"]["size"] == len(opus)
    assert (await download(api, "alice", sent["id"])).content == opus
    assert len(spy.starts()) == runs + 1

    # Unless it plays longer than MEDIA_MAX_DURATION_S: as it is, it was never measured
    # (and Baileys decodes a voice note whole for its waveform); converted, it is cut
    # and refused. So is Opus with a second stream chained after it.
    long_opus = ogg(tmp_path, "long-opus.ogg", 12, *OPUS)
    response = await send(api, "alice", bob, long_opus, "voice", "lo.ogg", "audio/ogg")
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit"] == "MEDIA_MAX_DURATION_S"
    chained = opus + ogg(tmp_path, "then-flac.ogg", 2, *FLAC)
    sent = data_of(await send(api, "alice", bob, chained, "voice", "c.ogg", "audio/ogg"), 202)
    assert (await download(api, "alice", sent["id"])).content != chained
    assert len(spy.starts()) == runs + 3


def test_ogg_opus_is_read_from_the_first_pages(tmp_path: Path) -> None:
    opus = ogg(tmp_path, "opus.ogg", 1, *OPUS)
    first_page = 27 + opus[26] + sum(opus[27 : 27 + opus[26]])
    cases = {
        "opus": (opus, True),
        "flac": (ogg(tmp_path, "flac.ogg", 1, *FLAC), False),
        "opus and flac": (ogg(tmp_path, "both.ogg", 1, *OPUS_AND_FLAC), False),
        "the first page alone": (opus[:first_page], False),
        "cut in the first page": (opus[: first_page - 1], False),
        "no BOS flag": (opus[:5] + b"\x00" + opus[6:], False),
        "OpusHead later": (b"OggS" + b"\x00" * 60 + opus, False),
        "empty": (b"", False),
        "another stream chained after it": (opus + ogg(tmp_path, "f.ogg", 1, *FLAC), False),
        "something after its last page": (opus + b"junk", False),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / "case.ogg"
        path.write_bytes(content)
        assert (ogg_opus_seconds(path) is not None) is expected, name
    path = tmp_path / "three.ogg"
    path.write_bytes(ogg(tmp_path, "three.ogg", 3, *OPUS))
    assert ogg_opus_seconds(path) == pytest.approx(3.0, abs=0.05)


async def test_conversion_over_its_memory_is_413(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    # 256 MB of address space is too little for ffmpeg's libraries plus a 4096x4096 frame.
    api, spy, bob = await spied(media_apps, local_store, tmp_path, media_conversion_memory_mb=256)
    big = png_claiming(4096, 4096, rows=4096 * (1 + 3 * 4096))
    response = await send(api, "alice", bob, big, "sticker", "big.png", "image/png")
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit"] == "MEDIA_CONVERSION_MEMORY_MB"
    assert_no_leak(response, api)
    (start,) = spy.starts()
    assert start["limits"]["RLIMIT_AS"] == 256 * MB


async def test_mp4_with_its_index_last_is_reordered_for_the_pipe(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api = await media_apps.start(local_store)
    _, bob = await ready_pair(api)
    sine = ("-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac")
    last = synth(tmp_path, "last.m4a", *sine)  # ffmpeg writes moov after mdat by default
    assert last.index(b"moov") > last.index(b"mdat")
    first = synth(tmp_path, "first.m4a", *sine, "-movflags", "+faststart")

    for content in (last, first):
        sent = data_of(await send(api, "alice", bob, content, "voice", "a.m4a", "audio/mp4"), 202)
        assert sent["media"]["mimetype"] == "audio/ogg"
        assert sent["media"]["size"] > 1000  # three seconds of audio, not an empty stream

    # Cut short, the boxes no longer tile the file: refused, nothing left behind.
    response = await send(api, "alice", bob, last[: len(last) // 2], "voice", "a.m4a", "audio/mp4")
    error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_no_leak(response, api)
    assert [p for p in (api.settings.data_dir / "tmp").rglob("*") if p.is_file()] == []


def test_mp4_reordering_refuses_malformed_boxes(tmp_path: Path) -> None:
    def box(kind: bytes, payload: bytes, size: int | None = None) -> bytes:
        return struct.pack(">I4s", len(payload) + 8 if size is None else size, kind) + payload

    ftyp = box(b"ftyp", b"M4A \x00\x00\x00\x00")
    mdat = box(b"mdat", b"\x00" * 32)
    huge_count = box(b"stco", b"\x00" * 4 + struct.pack(">I", 1 << 30))
    stbl = box(b"moov", box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", huge_count)))))
    deep = b""
    for _ in range(5000):  # past Python's recursion limit, eight bytes a level
        deep = box(b"trak", deep)
    cases = [
        ftyp + mdat + box(b"moov", b"", size=4),  # a size under its own header
        ftyp + mdat + box(b"moov", b"x" * 8, size=1),  # a 64-bit size cut short
        ftyp + mdat + box(b"moov", b"", size=1 << 20),  # runs past the end
        ftyp + mdat + stbl,  # a chunk table that claims 2^30 entries
        ftyp + mdat,  # no index at all
        ftyp + mdat + box(b"moov", deep),  # nested 5,000 deep (was a RecursionError: a 500)
    ]
    for number, content in enumerate(cases):
        source = tmp_path / f"case{number}.m4a"
        source.write_bytes(content)
        with pytest.raises(NotMp4):
            mp4_move_index_first(source, tmp_path / f"out{number}.m4a")


async def test_conversion_over_its_time_is_killed(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    # A gate that never opens: the stand-in ffmpeg hangs until the timeout kills it.
    api, spy, bob = await spied(
        media_apps, local_store, tmp_path, gated=True, media_conversion_timeout_s=1.0
    )
    response = await send(api, "alice", bob, tone(tmp_path, "wav"), "voice", "n.wav", "audio/wav")
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit"] == "MEDIA_CONVERSION_TIMEOUT_S"
    (start,) = spy.starts()
    try:
        os.kill(start["pid"], 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the timed-out conversion is still running")
    leftovers = [p for p in (api.settings.data_dir / "tmp").rglob("*") if p.exists()]
    assert leftovers == []


async def test_concurrent_conversions_stay_within_the_bound(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path
) -> None:
    api, spy, bob = await spied(
        media_apps, local_store, tmp_path, gated=True, media_conversion_concurrency=2
    )
    audio = tone(tmp_path, "wav")
    sends = [
        asyncio.create_task(send(api, "alice", bob, audio, "voice", "n.wav", "audio/wav"))
        for _ in range(5)
    ]

    async def started() -> int:
        return len(spy.starts())

    # Two conversions hold their slots at the gate; the other three must wait for one.
    await wait_for(started, lambda n: n >= 2, 20, "two conversions started")
    spy.open_gate()
    for response in await asyncio.gather(*sends):
        assert data_of(response, 202)["media"]["mimetype"] == "audio/ogg"
    assert len(spy.starts()) == 5
    assert spy.most_in_flight() == 2
