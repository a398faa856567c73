"""Format conversions WhatsApp expects: voice notes as OGG/Opus, stickers as WebP (ffmpeg).

A voice note already in OGG goes as it is only when it holds Opus alone and plays no
longer than `MEDIA_MAX_DURATION_S` (`probe.ogg_opus_seconds`, which reads every page):
`audio/ogg` names the container, which may hold FLAC or Vorbis, or a second stream
chained after the first, and those are converted (and cut at `MEDIA_MAX_DURATION_S`)
like any other audio.

ffmpeg is a large decoder fed with bytes from strangers, so it runs boxed in:

- it reads its input only from stdin (`pipe:0`, `-protocol_whitelist pipe`), with the
  demuxer named from an allow-list keyed by the type detected from the bytes: it never
  guesses the container, so a file that says "ID3" but holds an HLS playlist is read as
  MP3 (and fails) instead of opening the playlist's segments by path;
- its command line holds no path of ours but its output, a relative name in an empty
  temporary directory that is its working directory;
- image dimensions are read from the header and refused over a cap before decoding;
  audio is cut at `MEDIA_MAX_DURATION_S` and refused when it reaches it;
- it runs under RLIMIT_AS / RLIMIT_CPU / RLIMIT_FSIZE in its own process group, killed
  whole after a wall-clock timeout, and at most `MEDIA_CONVERSION_CONCURRENCY` at once;
- its stderr is logged on the server and never put in an answer (it names paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from openwa.errors import EngineError, NotSupported, PayloadTooLarge, UnsupportedMediaType
from openwa.media.demuxers import DEMUXERS
from openwa.media.probe import NotMp4, image_size, mp4_move_index_first, ogg_opus_seconds

if TYPE_CHECKING:
    from openwa.config import Settings
    from openwa.media.ingest import StagedMedia

log = structlog.get_logger(__name__)

_MP4 = frozenset({"audio/mp4", "video/mp4"})
_STDERR_KEEP = 4000  # bytes of ffmpeg's stderr kept for the server log
_DURATION_SLACK_US = 50_000


@dataclass(frozen=True)
class _Target:
    mimetype: str
    args: tuple[str, ...]
    output: str
    image: bool
    # Whether a file already of `mimetype` may go as it is (read from it, and the
    # longest a clip may play, `MEDIA_MAX_DURATION_S`).
    as_is: Callable[[Path, int], bool]


def _opus_within(path: Path, max_duration_s: int) -> bool:
    """OGG/Opus alone, and no longer than a conversion would let it be: one over it is
    converted, and so refused (413); as it is, it was never measured."""
    seconds = ogg_opus_seconds(path)
    return seconds is not None and seconds <= max_duration_s


_TARGETS = {
    "voice": _Target(
        "audio/ogg",
        ("-map", "0:a:0", "-vn", "-c:a", "libopus", "-b:a", "32k", "-f", "ogg"),
        "out.ogg",
        image=False,
        as_is=_opus_within,
    ),
    "sticker": _Target(
        "image/webp",
        (
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-vf",
            "scale=512:512:force_original_aspect_ratio=decrease",
            "-f",
            "webp",
        ),
        "out.webp",
        image=True,
        as_is=lambda _path, _max_s: True,
    ),
}


@dataclass(frozen=True)
class ConversionLimits:
    """The caps of one conversion (settings `MEDIA_CONVERSION_*`, `MEDIA_MAX_*`)."""

    concurrency: int = 2
    timeout_s: float = 120.0
    cpu_s: int = 60
    memory_mb: int = 1024
    max_duration_s: int = 1800
    max_image_dimension: int = 4096
    max_output_bytes: int = 67_108_864


def _over(message: str, limit: str, **details: object) -> PayloadTooLarge:
    return PayloadTooLarge(message, details={"limit": limit, **details})


def _failed(type_: str, mimetype: str) -> EngineError:
    """The one answer for a conversion ffmpeg refused: no stderr, no paths."""
    return EngineError(
        "the media could not be converted", details={"type": type_, "mimetype": mimetype}
    )


def _limiter(limits: ConversionLimits) -> Callable[[], None]:
    """What the child runs between fork and exec: its resource limits."""
    memory = limits.memory_mb * 1024 * 1024
    cpu = limits.cpu_s
    fsize = limits.max_output_bytes

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # Soft: SIGXCPU at cpu_s; hard: SIGKILL a second later if it is ignored.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class MediaConverter:
    """Runs ffmpeg for the conversions WhatsApp needs, within `limits`."""

    def __init__(self, limits: ConversionLimits, tmp_dir: Path, ffmpeg: str | None) -> None:
        self.limits = limits
        self._tmp_dir = tmp_dir
        self._ffmpeg = ffmpeg
        self._slots = asyncio.Semaphore(limits.concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaConverter:
        limits = ConversionLimits(
            concurrency=settings.media_conversion_concurrency,
            timeout_s=settings.media_conversion_timeout_s,
            cpu_s=settings.media_conversion_cpu_s,
            memory_mb=settings.media_conversion_memory_mb,
            max_duration_s=settings.media_max_duration_s,
            max_image_dimension=settings.media_max_image_dimension,
            max_output_bytes=settings.max_media_bytes,
        )
        return cls(limits, settings.data_dir / "tmp", settings.ffmpeg_path)

    def _binary(self, wanted: str, mimetype: str) -> str:
        ffmpeg = self._ffmpeg or shutil.which("ffmpeg")
        if ffmpeg is None:
            raise NotSupported(
                f"converting {mimetype} to {wanted} needs ffmpeg, which is not installed",
                details={"capability": "media_conversion", "install": "apt-get install ffmpeg"},
            )
        return ffmpeg

    def _check_input(self, type_: str, target: _Target, staged: StagedMedia) -> str:
        """The demuxer for the input, after the header checks; refuses what fails them."""
        demuxer = DEMUXERS.get(staged.mimetype)
        if demuxer is None:
            raise UnsupportedMediaType(
                f"{type_} media cannot be converted from {staged.mimetype}",
                details={"type": type_, "detected": staged.mimetype},
            )
        if target.image:
            size = image_size(staged.path, staged.mimetype)
            if size is None:
                raise UnsupportedMediaType(
                    "the image's header could not be read",
                    details={"type": type_, "detected": staged.mimetype},
                )
            cap = self.limits.max_image_dimension
            if max(size) > cap:
                raise _over(
                    f"the image is over MEDIA_MAX_IMAGE_DIMENSION ({cap} pixels a side)",
                    "MEDIA_MAX_IMAGE_DIMENSION",
                    width=size[0],
                    height=size[1],
                    maxDimension=cap,
                )
        return demuxer

    async def _pipeable(self, type_: str, staged: StagedMedia, work: Path) -> Path:
        """The file to hand ffmpeg: `staged`, or for an MP4 with its index last, a copy
        with the index first (a pipe cannot seek back to it)."""
        if staged.mimetype not in _MP4:
            return staged.path
        reordered = work.with_name(work.name + ".mp4")
        try:
            moved = await asyncio.to_thread(mp4_move_index_first, staged.path, reordered)
        except NotMp4 as exc:
            reordered.unlink(missing_ok=True)
            raise UnsupportedMediaType(
                "the MP4 file's structure could not be read",
                details={"type": type_, "detected": staged.mimetype},
            ) from exc
        return reordered if moved else staged.path

    def command(self, ffmpeg: str, demuxer: str, target: _Target) -> list[str]:
        """ffmpeg's arguments: stdin in through `demuxer` only, one relative output."""
        decoder = ["-max_pixels", str(self.limits.max_image_dimension**2)] if target.image else []
        return [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
            "-filter_threads",
            "1",
            "-threads",
            "1",
            *decoder,
            "-protocol_whitelist",
            "pipe",
            "-f",
            demuxer,
            "-i",
            "pipe:0",
            *target.args,
            "-threads",
            "1",
            "-t",
            str(self.limits.max_duration_s),
            "-progress",
            "pipe:1",
            "-y",
            f"file:{target.output}",
        ]

    async def convert_if_needed(self, type_: str, staged: StagedMedia) -> StagedMedia:
        """`staged` as WhatsApp wants it for `type_` (converted, or as it is)."""
        target = _TARGETS.get(type_)
        if target is None:
            return staged
        if staged.mimetype == target.mimetype and await asyncio.to_thread(
            target.as_is, staged.path, self.limits.max_duration_s
        ):
            return staged
        ffmpeg = self._binary(target.mimetype, staged.mimetype)
        demuxer = self._check_input(type_, target, staged)
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self._tmp_dir, prefix="convert-"))
        source = staged.path
        try:
            source = await self._pipeable(type_, staged, work)
            async with self._slots:
                argv = self.command(ffmpeg, demuxer, target)
                await self._run(argv, source, staged, target, work)
            return self._adopt(staged, target, work / target.output)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if source != staged.path:
                source.unlink(missing_ok=True)

    async def _run(
        self, argv: list[str], source: Path, staged: StagedMedia, target: _Target, work: Path
    ) -> None:
        with source.open("rb") as stdin:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=stdin,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=work,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                start_new_session=True,
                preexec_fn=_limiter(self.limits),
            )
        assert process.stdout is not None
        assert process.stderr is not None
        progress = asyncio.create_task(_last_out_time(process.stdout))
        stderr = asyncio.create_task(_tail(process.stderr))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), self.limits.timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # Whatever happened (timeout, cancellation), nothing of the group outlives us.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        out_time_us, errors = await progress, await stderr
        code = process.returncode
        log.info(
            "media_conversion",
            mimetype=staged.mimetype,
            target=target.mimetype,
            returncode=code,
            timed_out=timed_out,
            out_time_us=out_time_us,
            stderr=errors[-_STDERR_KEEP:] or None,
        )
        self._judge(staged, target, code, timed_out, out_time_us, errors)

    def _judge(
        self,
        staged: StagedMedia,
        target: _Target,
        code: int | None,
        timed_out: bool,
        out_time_us: int,
        errors: str,
    ) -> None:
        """Map ffmpeg's outcome onto the contract's codes (413 for every cap hit)."""
        limits = self.limits
        if timed_out:
            raise _over(
                f"media conversion took over MEDIA_CONVERSION_TIMEOUT_S ({limits.timeout_s:g} s)",
                "MEDIA_CONVERSION_TIMEOUT_S",
            )
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            raise _over(
                f"media conversion used over MEDIA_CONVERSION_CPU_S ({limits.cpu_s} s of CPU)",
                "MEDIA_CONVERSION_CPU_S",
            )
        if code == -signal.SIGXFSZ:
            raise _over("the converted media is over MAX_MEDIA_BYTES", "MAX_MEDIA_BYTES")
        if code != 0:
            # ENOMEM while decoding, or too little address space to even map its libraries.
            if "Cannot allocate memory" in errors or "error while loading shared" in errors:
                raise _over(
                    f"media conversion needed over MEDIA_CONVERSION_MEMORY_MB "
                    f"({limits.memory_mb} MB)",
                    "MEDIA_CONVERSION_MEMORY_MB",
                )
            raise _failed(target.mimetype, staged.mimetype)
        if not target.image:
            if out_time_us <= 0:
                raise _failed(target.mimetype, staged.mimetype)
            if out_time_us >= limits.max_duration_s * 1_000_000 - _DURATION_SLACK_US:
                raise _over(
                    f"the media is over MEDIA_MAX_DURATION_S ({limits.max_duration_s} s)",
                    "MEDIA_MAX_DURATION_S",
                    maxDurationS=limits.max_duration_s,
                )

    def _adopt(self, staged: StagedMedia, target: _Target, out: Path) -> StagedMedia:
        """The converted file, moved out of the work directory, in place of `staged`."""
        if not out.is_file() or out.stat().st_size == 0:
            raise _failed(target.mimetype, staged.mimetype)
        fd, name = tempfile.mkstemp(dir=self._tmp_dir, prefix="converted-")
        os.close(fd)
        kept = Path(name)
        os.replace(out, kept)
        digest, size = hashlib.sha256(), 0
        with kept.open("rb") as file:
            while chunk := file.read(256 * 1024):
                digest.update(chunk)
                size += len(chunk)
        staged.discard()
        return type(staged)(
            path=kept,
            mimetype=target.mimetype,
            size=size,
            sha256=digest.hexdigest(),
            filename=staged.filename,
        )


async def _last_out_time(stream: asyncio.StreamReader) -> int:
    """The last `out_time_us` of ffmpeg's `-progress` report (how much it wrote)."""
    last = 0
    while line := await stream.readline():
        key, _, value = line.decode(errors="replace").strip().partition("=")
        if key == "out_time_us":
            with contextlib.suppress(ValueError):
                last = int(value)
    return last


async def _tail(stream: asyncio.StreamReader) -> str:
    """The end of ffmpeg's stderr, read as it comes so that it is never held whole."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-_STDERR_KEEP:]
    return kept.decode(errors="replace")
