"""Parsing a media send: JSON (`{url}` or `{base64}`) or `multipart/form-data`.

Multipart files are spooled to disk by Starlette as they arrive (1 MB in memory at
most), then copied in chunks to our staging file, so a large upload is never held
whole in memory.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from openwa.api.errors import validation_details
from openwa.errors import UnsupportedMediaType, ValidationFailed
from openwa.kit.chat_ids import normalize_chat_id
from openwa.media.ingest import MediaIngest, StagedMedia
from openwa.media.types import INLINE_SAFE, OCTET_STREAM, essence, extension_for, valid_mimetype
from openwa.messages.schemas import MediaMessageCreate, MediaUploadFields
from openwa.services import Services

# A JSON media body that stops arriving for this long is given up.
_BODY_IDLE_S = 30.0


class _StrictTextParts(MultiPartParser):
    """Starlette's multipart parser, but a text field that is not valid in its charset
    (UTF-8 unless the part says otherwise) is refused. Starlette read it as Latin-1, so
    a caption sent as `a\\xff\\xfeb` was stored as `aÿþb`, where a JSON body with
    invalid UTF-8 is refused."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError:
                raise MultiPartException(
                    f"the field {part.field_name!r} is not valid {self._charset} text"
                ) from None
        super().on_part_end()


async def _read_form(request: Request) -> FormData:
    """The multipart body: one file, 20 fields at most, text fields as their charset."""
    try:
        async with aclosing(request.stream()) as stream:
            return await _StrictTextParts(
                request.headers, stream, max_files=1, max_fields=20
            ).parse()
    except MultiPartException as exc:
        raise ValidationFailed(details=[{"field": "body", "message": exc.message}]) from None


def _invalid(exc: ValidationError, prefix: str) -> ValidationFailed:
    errors = [{**e, "loc": (prefix, *e.get("loc", ()))} for e in exc.errors()]
    return ValidationFailed(details=validation_details(errors))


async def read_media_request(
    request: Request, services: Services
) -> tuple[MediaMessageCreate | MediaUploadFields, StagedMedia]:
    content_type = request.headers.get("content-type", "")
    ingest = services.media_ingest
    if content_type.startswith("multipart/form-data"):
        form = await _read_form(request)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationFailed(
                    details=[{"field": "body.file", "message": "a file part is required"}]
                )
            values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            try:
                # Form values are strings: read as such ("true", "1.5"), still strictly.
                fields = MediaUploadFields.model_validate_strings(values)
            except ValidationError as exc:
                raise _invalid(exc, "body") from exc
            if upload.filename and "\x00" in upload.filename:
                raise ValidationFailed(
                    details=[{"field": "body.file", "message": "the file name holds a NUL"}]
                )
            if upload.content_type and not valid_mimetype(upload.content_type):
                raise ValidationFailed(
                    details=[
                        {"field": "body.file", "message": "the part's Content-Type is malformed"}
                    ]
                )
            # A chat id that cannot be an address is refused before any byte is read.
            normalize_chat_id(fields.chat_id)
            staged = await ingest.from_stream(
                fields.type, upload, upload.content_type, fields.filename or upload.filename
            )
        finally:
            await form.close()
        return fields, staged
    if content_type.startswith("application/json") or not content_type:
        return await _read_json(request, ingest)
    raise UnsupportedMediaType(
        "send application/json or multipart/form-data", details={"contentType": content_type}
    )


async def _read_json(
    request: Request, ingest: MediaIngest
) -> tuple[MediaMessageCreate, StagedMedia]:
    """A JSON media send: the body read, parsed and its base64 decoded into a staged file
    under a permit when it is large (`MediaIngest.reading_json`), each copy let go as
    soon as the next is made; typing, conversion and URL fetches come after the permit."""
    async with ingest.reading_json(request.headers.get("content-length")):
        body = await _parse_json(request)
        normalize_chat_id(body.chat_id)
        media = body.media
        if media.base64 is None:
            spooled = None
        else:
            spooled = await ingest.spool_base64(media.base64)
            # The staged file holds the bytes now: the string goes with the request's copy.
            body = body.model_copy(update={"media": media.model_copy(update={"base64": None})})
            media = body.media
    if spooled is not None:
        return body, await ingest.finish(body.type, spooled, media.mimetype, media.filename)
    assert media.url is not None
    return body, await ingest.from_url(body.type, media.url, media.filename)


async def _parse_json(request: Request) -> MediaMessageCreate:
    """The body read from the stream (not kept on the request, as `request.body()`
    would). A client that sends nothing for `_BODY_IDLE_S` is answered 400: a large
    body holds a permit while it arrives, at whatever pace an honest uplink has."""
    raw = bytearray()
    chunks = aiter(request.stream())
    while True:
        try:
            async with asyncio.timeout(_BODY_IDLE_S):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except TimeoutError:
            message = f"nothing received for {_BODY_IDLE_S:g}s"
            raise ValidationFailed(details=[{"field": "body", "message": message}]) from None
        raw += chunk
    try:
        return MediaMessageCreate.model_validate_json(raw)
    except ValidationError as exc:
        # Not chained: a `json_invalid` error holds the whole body as its input.
        raise _invalid(exc, "body") from None


def content_disposition(filename: str) -> str:
    """A Content-Disposition that survives any name (RFC 6266, UTF-8 form as well).

    The quoted ASCII form keeps printable ASCII but quotes and backslashes; the UTF-8
    form percent-encodes everything else, so no name can break the header.
    """
    ascii_name = (
        "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename).strip()
        or "media"
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# Served with every download: the bytes are someone else's, so a browser must neither
# guess another type (nosniff) nor run them (a sandbox with nothing allowed).
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
}


def download_headers(media: dict[str, Any], message_id: str) -> tuple[str, dict[str, str]]:
    """The Content-Type and headers a stored media download is served with.

    A stored type that is not a well-formed media type (an engine's report, a row from
    before the check at the edge) is served as application/octet-stream. Only a short
    allow-list of image, audio and video types may show inline; anything else (HTML,
    SVG, PDF, ...) is an attachment, with the stored name or `{messageId}.{ext}`.
    """
    stored = str(media.get("mimetype") or "")
    mimetype = essence(stored) if valid_mimetype(stored) else OCTET_STREAM
    headers = {**_DOWNLOAD_HEADERS, "Content-Length": str(media["size"])}
    filename = media.get("filename")
    if mimetype not in INLINE_SAFE:
        name = filename or f"{message_id}.{extension_for(mimetype)}"
        headers["Content-Disposition"] = content_disposition(name)
    elif filename:
        headers["Content-Disposition"] = content_disposition(filename)
    return mimetype, headers
