"""Format conversions WhatsApp expects: voice notes as OGG/Opus, stickers as WebP (ffmpeg)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from openwa.errors import EngineError, NotSupported

if TYPE_CHECKING:
    from openwa.media.ingest import StagedMedia

_TARGETS = {
    # type: (wanted mimetype, ffmpeg arguments, new mimetype)
    "voice": ("audio/ogg", ["-vn", "-c:a", "libopus", "-b:a", "32k", "-f", "ogg"], "audio/ogg"),
    "sticker": (
        "image/webp",
        ["-vf", "scale=512:512:force_original_aspect_ratio=decrease", "-f", "webp"],
        "image/webp",
    ),
}
_TIMEOUT_S = 120


async def convert_if_needed(type_: str, staged: StagedMedia, tmp_dir: Path) -> StagedMedia:
    target = _TARGETS.get(type_)
    if target is None or staged.mimetype == target[0]:
        return staged
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise NotSupported(
            f"converting {staged.mimetype} to {target[0]} needs ffmpeg, which is not installed",
            details={"capability": "media_conversion", "install": "apt-get install ffmpeg"},
        )
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="converted-")
    os.close(fd)
    out = Path(name)
    process = await asyncio.create_subprocess_exec(
        ffmpeg,
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(staged.path),
        *target[1],
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), _TIMEOUT_S)
    except TimeoutError:
        process.kill()
        out.unlink(missing_ok=True)
        raise EngineError("media conversion took too long") from None
    if process.returncode != 0:
        out.unlink(missing_ok=True)
        raise EngineError(
            "ffmpeg could not convert the media",
            details={"stderr": stderr.decode(errors="replace")[-500:]},
        )
    staged.discard()
    data = out.read_bytes()
    return type(staged)(
        path=out,
        mimetype=target[2],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        filename=staged.filename,
    )
