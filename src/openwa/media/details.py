"""What WhatsApp shows of a media message before it is downloaded: the picture's size,
a small JPEG thumbnail, a clip's length, a voice note's waveform.

Read from the file a send hands over, before the upload: in the whatsmeow worker
(outside the session's command lock), and in the API process for Baileys, which would
otherwise run ffmpeg for a video's thumbnail itself, through a shell, with none of these
caps. Image sizes come from the header (`media.probe`), the rest from
`ffprobe`/`ffmpeg` (which neonize needs anyway) under a CPU, memory and time cap, each
told the one demuxer that may read the type and allowed local files only. A picture
over `MEDIA_MAX_IMAGE_DIMENSION` a side (as its header or ffprobe states it) gets no
thumbnail, and the decoder is given `-max_pixels` of the same cap: a 140 KB PNG that
claims 16000x16000 would otherwise have ffmpeg allocate its gigabyte. The worker runs a
send's commands on many threads; at most `_AT_ONCE` of these runs go at a time. The
file has already passed our ingestion caps; still, none of this may fail a send: what
cannot be read (or waits too long for its turn) is left out, and WhatsApp shows the
message without it.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import resource
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from openwa.media.demuxers import demuxer_for
from openwa.media.probe import image_size

log = logging.getLogger("openwa.whatsmeow.worker")

THUMBNAIL_SIDE = 72  # pixels on the longer side, as WhatsApp's own clients send
WAVEFORM_BARS = 64  # one byte each, 0 to 100
_TIMEOUT_S = 30.0
_CPU_S = 20
_MEMORY = 512 * 1024 * 1024
_WAVEFORM_RATE = 8000  # samples per second: plenty for 64 bars
_WAVEFORM_MAX_S = 1800
_DEFAULT_MAX_SIDE = 4096  # MEDIA_MAX_IMAGE_DIMENSION's default
# ffprobe/ffmpeg runs at once in a worker, whose command threads are many (32): each run
# may take its 512 MB. One that waits its turn longer than a run may take goes without.
_AT_ONCE = 2
_SLOT_WAIT_S = _TIMEOUT_S
_slots = threading.BoundedSemaphore(_AT_ONCE)


@dataclass(frozen=True, slots=True)
class MediaDetails:
    width: int | None = None
    height: int | None = None
    seconds: int | None = None
    thumbnail: bytes | None = None
    waveform: bytes | None = None


def describe(
    path: Path, kind: str, mimetype: str, max_side: int = _DEFAULT_MAX_SIDE
) -> MediaDetails:
    """The details WhatsApp shows for a `kind` (`image`, `video`, `voice`, ...) of media;
    a thumbnail only of a picture within `max_side` pixels a side."""
    source = _Input(path, demuxer_for(mimetype))
    try:
        if kind in ("image", "sticker"):
            size = image_size(path, mimetype)
            width, height = size if size else (None, None)
            thumbnail = None
            if kind == "image" and _within(width, height, max_side, mimetype):
                thumbnail = _thumbnail(source, max_side)
            return MediaDetails(width, height, thumbnail=thumbnail)
        if kind == "video":
            width, height, seconds = _probe(source, video=True)
            thumbnail = None
            if _within(width, height, max_side, mimetype):
                thumbnail = _thumbnail(source, max_side)
            return MediaDetails(width, height, seconds, thumbnail=thumbnail)
        if kind in ("audio", "voice"):
            _w, _h, seconds = _probe(source, video=False)
            waveform = _waveform(source) if kind == "voice" else None
            return MediaDetails(seconds=seconds, waveform=waveform)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.info("no media details for a %s (%s): %s", kind, mimetype, exc)
    return MediaDetails()


def _within(width: int | None, height: int | None, max_side: int, mimetype: str) -> bool:
    """Whether a picture's stated size may be decoded for a thumbnail (unknown: no)."""
    if width is None or height is None:
        return False
    if max(width, height) > max_side:
        log.info("no thumbnail for a %dx%d %s: over %d a side", width, height, mimetype, max_side)
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Input:
    """A file for ffprobe or ffmpeg to read, and the one demuxer that may read it."""

    path: Path
    demuxer: str | None

    def args(self) -> list[str]:
        """The input's arguments: its demuxer named (never guessed), local files only
        (no demuxer may open an address it names). No demuxer known: nothing is read."""
        if self.demuxer is None:
            raise ValueError("no demuxer is allowed for this type")
        return ["-f", self.demuxer, "-protocol_whitelist", "file", "-i", f"file:{self.path}"]


_LIMITS = (
    (resource.RLIMIT_AS, (_MEMORY, _MEMORY)),
    (resource.RLIMIT_CPU, (_CPU_S, _CPU_S + 1)),
    (resource.RLIMIT_CORE, (0, 0)),
)


def _run(tool: str, *args: str) -> bytes:
    """The tool's output. Its caps are set on the running child (`prlimit`), not by a
    `preexec_fn`: this process runs Go's threads, and Python code between fork and exec
    is not safe there. The child is still starting ffmpeg when they apply. At most
    `_AT_ONCE` run at a time; waiting for a turn over `_SLOT_WAIT_S` is a timeout."""
    binary = shutil.which(tool)
    if binary is None:
        raise OSError(f"{tool} is not installed")
    # One decoding thread: each thread's stacks would count against the memory cap.
    extra = ["-nostdin", "-threads", "1"] if tool == "ffmpeg" else []
    command = [binary, "-v", "error", *extra, *args]
    if not _slots.acquire(timeout=_SLOT_WAIT_S):
        raise subprocess.TimeoutExpired(tool, _SLOT_WAIT_S)
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with child:
            for limit, value in _LIMITS:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(child.pid, limit, value)
            try:
                out, _ = child.communicate(timeout=_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                raise
    finally:
        _slots.release()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, tool)
    return out


def _probe(source: _Input, *, video: bool) -> tuple[int | None, int | None, int | None]:
    """(width, height, whole seconds) of the first video stream and the container."""
    args = ["-show_entries", "format=duration", "-of", "json"]
    if video:
        args = ["-select_streams", "v:0", "-show_entries", "stream=width,height", *args]
    found = json.loads(_run("ffprobe", *args, *source.args()))
    stream = (found.get("streams") or [{}])[0]
    duration = (found.get("format") or {}).get("duration")
    seconds = round(float(duration)) if duration not in (None, "N/A") else None
    return stream.get("width"), stream.get("height"), seconds


def _thumbnail(source: _Input, max_side: int) -> bytes | None:
    """A small JPEG of the first frame, or None: the sizes already read stay without it."""
    side = THUMBNAIL_SIDE
    scale = f"scale={side}:{side}:force_original_aspect_ratio=decrease"
    try:
        jpeg = _run(
            "ffmpeg",
            # The decoder's own refusal of a frame over the cap, whatever a header said.
            *("-max_pixels", str(max_side * max_side)),
            *source.args(),
            "-frames:v",
            "1",
            "-vf",
            scale,
            "-q:v",
            "5",
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "pipe:1",
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.info("no thumbnail (%s): %s", source.demuxer, exc)
        return None
    return jpeg if jpeg.startswith(b"\xff\xd8") else None


def _waveform(source: _Input) -> bytes | None:
    """64 bars of the note's loudness (mean amplitude per slice), the loudest 100."""
    pcm = _run(
        "ffmpeg",
        *source.args(),
        "-t",
        str(_WAVEFORM_MAX_S),
        "-ac",
        "1",
        "-ar",
        str(_WAVEFORM_RATE),
        "-f",
        "s16le",
        "-acodec",
        "pcm_s16le",
        "pipe:1",
    )
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if len(samples) < WAVEFORM_BARS:
        return None
    step = len(samples) // WAVEFORM_BARS
    bars = [
        sum(abs(s) for s in samples[i * step : (i + 1) * step]) / step for i in range(WAVEFORM_BARS)
    ]
    loudest = max(bars) or 1.0
    return bytes(round(100 * bar / loudest) for bar in bars)
