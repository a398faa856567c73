"""Parsing a media send: JSON (`{url}` or `{base64}`) or `multipart/form-data`.

Multipart files are spooled to disk by Starlette as they arrive (1 MB in memory at
most), then copied in chunks to our staging file, so a large upload is never held
whole in memory.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from openwa.api.errors import validation_details
from openwa.errors import UnsupportedMediaType, ValidationFailed
from openwa.media.ingest import StagedMedia
from openwa.messages.schemas import MediaMessageCreate, MediaUploadFields
from openwa.services import Services


def _invalid(exc: ValidationError, prefix: str) -> ValidationFailed:
    errors = [{**e, "loc": (prefix, *e.get("loc", ()))} for e in exc.errors()]
    return ValidationFailed(details=validation_details(errors))


async def read_media_request(
    request: Request, services: Services
) -> tuple[MediaMessageCreate | MediaUploadFields, StagedMedia]:
    content_type = request.headers.get("content-type", "")
    ingest = services.media_ingest
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationFailed(
                    details=[{"field": "body.file", "message": "a file part is required"}]
                )
            values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            try:
                fields = MediaUploadFields.model_validate(values)
            except ValidationError as exc:
                raise _invalid(exc, "body") from exc
            staged = await ingest.from_stream(
                fields.type, upload, upload.content_type, fields.filename or upload.filename
            )
        finally:
            await form.close()
        return fields, staged
    if content_type.startswith("application/json") or not content_type:
        try:
            body = MediaMessageCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid(exc, "body") from exc
        return body, await ingest.from_source(body.type, body.media)
    raise UnsupportedMediaType(
        "send application/json or multipart/form-data", details={"contentType": content_type}
    )


def content_disposition(filename: str) -> str:
    """An attachment header that survives any name (RFC 6266, UTF-8 form as well)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
