"""Media in: from an upload, base64 or a URL, into a checked temporary file.

Whatever the source, bytes are streamed to a temporary file with a running size check
(413 over `MAX_MEDIA_BYTES`), never held whole in memory; the type is read from the
bytes themselves and must fit the message type (415 otherwise); voice notes become
OGG/Opus and stickers WebP (ffmpeg, boxed in: see `openwa.media.convert`). A claimed
type is only a fallback and only kept when it is a well-formed media type. The caller
stores the file under a key it makes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from openwa.errors import (
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    WebhookUrlForbidden,
)
from openwa.kit.addresses import ForbiddenAddress, check_url, guarded_connector
from openwa.kit.redact import redact_text, redact_url
from openwa.media.convert import MediaConverter
from openwa.media.types import ALLOWED, OCTET_STREAM, detect, essence, valid_mimetype
from openwa.messages.schemas import MediaSource

_CHUNK = 256 * 1024
_SNIFF = 8192
# Redirects a media URL may take (CDNs and signed links redirect); each hop's address
# is checked when it is connected to, like the first.
MAX_REDIRECTS = 5
_URL_FIELD = "body.media.url"


@dataclass
class StagedMedia:
    path: Path
    mimetype: str
    size: int
    sha256: str
    filename: str | None

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# A staged file as spooled: its path, size, SHA-256 and first bytes (for the type).
Spooled = tuple[Path, int, str, bytes]


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


def _clean_filename(name: str | None) -> str | None:
    """Keep a client's file name as a label only: no path, no control characters."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"\0')[:200].strip()
    return base if base.strip(".") else None  # "." and ".." are no names


# Characters of base64 decoded at a time (a multiple of 4): decoding holds the GIL, so
# a whole body at MAX_MEDIA_BYTES decoded in one call held the event loop for about a
# quarter of a second even from a thread; between slices the loop runs. Each slice goes
# to the staged file as it is decoded: the decoded whole is never in memory.
_DECODE_SLICE = 1 << 20
# Base64 bodies decoded at once per process (each may be a MAX_MEDIA_BYTES file).
_DECODES_AT_ONCE = 2


def _base64_slices(data: str) -> Iterator[str]:
    """The slices of plain base64 or of a `data:` URI's base64. Padding belongs at the
    end only: a slice before the last with `=` in it is not valid."""
    start = data.find(",") + 1 if data.startswith("data:") else 0
    for at in range(start, len(data), _DECODE_SLICE):
        piece = data[at : at + _DECODE_SLICE]
        if "=" in piece and at + _DECODE_SLICE < len(data):
            raise binascii.Error("padding before the end")
        yield piece


def _decode_slice(piece: str) -> bytes:
    return base64.b64decode(piece, validate=True)


# A JSON media body longer than this (or of no stated length) is read, parsed and
# staged by at most `_DECODES_AT_ONCE` requests at a time: each holds the body, its
# parsed string and a slice in memory, about 2.7 times its media's size.
_LARGE_JSON_BODY = 1 << 20


class MediaIngest:
    def __init__(
        self,
        *,
        max_bytes: int,
        fetch_timeout_s: float,
        allow_private: bool,
        tmp_dir: Path,
        converter: MediaConverter,
    ) -> None:
        self._max_bytes = max_bytes
        self._decoding = asyncio.Semaphore(_DECODES_AT_ONCE)
        self._large_bodies = asyncio.Semaphore(_DECODES_AT_ONCE)
        self._fetch_timeout_s = fetch_timeout_s
        self._allow_private = allow_private
        self._tmp_dir = tmp_dir
        self.converter = converter

    async def _spool(self, chunks: AsyncIterator[bytes]) -> Spooled:
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp_dir, prefix="upload-")
        path = Path(name)
        size, digest, head = 0, hashlib.sha256(), b""
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise PayloadTooLarge(
                            "media is over MAX_MEDIA_BYTES", details={"maxBytes": self._max_bytes}
                        )
                    if len(head) < _SNIFF:
                        head += chunk[: _SNIFF - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size == 0:
            path.unlink(missing_ok=True)
            raise ValidationFailed(details=[{"field": "media", "message": "media is empty"}])
        return path, size, digest.hexdigest(), head

    async def from_stream(
        self, type_: str, source: Readable, claimed: str | None, filename: str | None
    ) -> StagedMedia:
        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await source.read(_CHUNK):
                yield chunk

        return await self.finish(type_, await self._spool(chunks()), claimed, filename)

    async def from_base64(
        self, type_: str, data: str, claimed: str | None, filename: str | None
    ) -> StagedMedia:
        return await self.finish(type_, await self.spool_base64(data), claimed, filename)

    async def spool_base64(self, data: str) -> Spooled:
        """Base64 decoded into a staged file, a slice at a time (`finish` types it)."""
        if len(data) * 3 // 4 > self._max_bytes + 3:
            raise PayloadTooLarge(
                "media is over MAX_MEDIA_BYTES", details={"maxBytes": self._max_bytes}
            )

        async def chunks() -> AsyncIterator[bytes]:
            for piece in _base64_slices(data):
                # On a thread: the loop runs while a slice decodes.
                yield await asyncio.to_thread(_decode_slice, piece)

        try:
            # At most `_DECODES_AT_ONCE` at a time. A request that goes away mid-decode
            # gives its permit back at once; the slice then decoding (a megabyte)
            # finishes on its thread and is dropped.
            async with self._decoding:
                return await self._spool(chunks())
        except (binascii.Error, ValueError) as exc:
            raise ValidationFailed(
                details=[{"field": "body.media.base64", "message": "not valid base64"}]
            ) from exc

    @contextlib.asynccontextmanager
    async def reading_json(self, content_length: str | None) -> AsyncIterator[None]:
        """Around reading, parsing and staging a JSON media body: a large one waits its
        turn, so that concurrent base64 sends cannot hold memory without bound (a body
        at MAX_MEDIA_BYTES is about 4/3 of it as bytes, and as much again parsed)."""
        small = content_length is not None and content_length.isdigit()
        if small and int(content_length or 0) <= _LARGE_JSON_BODY:
            yield
            return
        async with self._large_bodies:
            yield

    async def from_url(self, type_: str, url: str, filename: str | None) -> StagedMedia:
        """Fetch a client's URL, following at most `MAX_REDIRECTS` redirects.

        `check_url` answers early for the URL given; the binding check is the guarded
        connector's, on the address of every connection (each redirect hop included),
        so a redirect or a name that resolves elsewhere later cannot reach a private
        address. The body is capped at `MAX_MEDIA_BYTES` while it streams.
        """
        await check_url(url, self._allow_private, _URL_FIELD)
        timeout = aiohttp.ClientTimeout(total=self._fetch_timeout_s)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=guarded_connector(self._allow_private), timeout=timeout
                ) as http,
                # aiohttp refuses the Nth redirect: N - 1 are followed.
                http.get(url, max_redirects=MAX_REDIRECTS + 1) as response,
            ):
                if response.status != 200:
                    raise ValidationFailed(
                        "the media URL did not answer 200",
                        details=[{"field": _URL_FIELD, "message": f"HTTP {response.status}"}],
                    )
                claimed = response.headers.get("Content-Type")
                name = filename or _clean_filename(response.url.path.rsplit("/", 1)[-1])
                spooled = await self._spool(response.content.iter_chunked(_CHUNK))
        except aiohttp.TooManyRedirects as exc:
            raise ValidationFailed(
                "the media URL redirected too often",
                details=[{"field": _URL_FIELD, "message": f"over {MAX_REDIRECTS} redirects"}],
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            # Refused at a hop's connect or at its lookup (a name of forbidden addresses
            # only): the guarded connector's own type, never read from the message.
            if isinstance(getattr(exc, "os_error", None), ForbiddenAddress):
                raise WebhookUrlForbidden(
                    details={"url": redact_url(url), "reason": reason}
                ) from exc
            raise ValidationFailed(
                "the media URL could not be fetched",
                details=[{"field": _URL_FIELD, "message": reason}],
            ) from exc
        return await self.finish(type_, spooled, claimed, name)

    async def from_source(self, type_: str, source: MediaSource) -> StagedMedia:
        """From a JSON media object: `{url}` or `{base64, mimetype}`."""
        if source.url is not None:
            return await self.from_url(type_, source.url, source.filename)
        assert source.base64 is not None
        return await self.from_base64(type_, source.base64, source.mimetype, source.filename)

    async def finish(
        self,
        type_: str,
        spooled: Spooled,
        claimed: str | None,
        filename: str | None,
    ) -> StagedMedia:
        """A spooled file typed from its bytes (and converted where the type needs it);
        the file is removed if it is refused."""
        path, size, sha256, head = spooled
        try:
            detected = detect(head)
            allowed = ALLOWED[type_]
            # A remote server's Content-Type is not checked at the edge: a malformed one
            # counts as none, so it can never reach a download's headers.
            claimed_type = essence(claimed) if claimed and valid_mimetype(claimed) else None
            mimetype = detected or (claimed_type if allowed is None else None) or OCTET_STREAM
            if allowed is not None and mimetype not in allowed:
                raise UnsupportedMediaType(
                    f"{type_} media cannot be {mimetype}",
                    details={"type": type_, "detected": detected, "claimed": claimed_type},
                )
            staged = StagedMedia(path, mimetype, size, sha256, _clean_filename(filename))
            return await self.converter.convert_if_needed(type_, staged)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
