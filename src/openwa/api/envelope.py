"""The contract's envelope: `{success, data | error, meta}` and list pagination."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import Field
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response

from openwa.api.context import request_id_var
from openwa.kit import wire_json
from openwa.kit.clock import iso, utcnow
from openwa.kit.pagination import PageParams, total_pages
from openwa.kit.schema import CamelModel

T = TypeVar("T")


class Meta(CamelModel):
    timestamp: str = Field(examples=["2026-11-26T10:00:00.000Z"])
    request_id: str = Field(examples=["req_01JD8X0000000000000000000A"])


class Pagination(CamelModel):
    page: int
    limit: int
    total: int
    total_pages: int


class Envelope(CamelModel, Generic[T]):
    success: Literal[True] = True
    data: T
    meta: Meta


class PageEnvelope(CamelModel, Generic[T]):
    success: Literal[True] = True
    data: list[T]
    pagination: Pagination
    meta: Meta


class ErrorBody(CamelModel):
    code: str = Field(examples=["VALIDATION_ERROR"])
    message: str
    details: Any = None


class ErrorEnvelope(CamelModel):
    success: Literal[False] = False
    error: ErrorBody
    meta: Meta


def meta() -> Meta:
    return Meta(timestamp=iso(utcnow()), request_id=request_id_var.get())


def ok(data: T) -> Envelope[T]:
    return Envelope[T](data=data, meta=meta())


_OK_HEAD = b'{"success":true,"data":'


def ok_json(data: bytes, status: int = 200) -> Response:
    """The envelope around `data`, already rendered as JSON: for hot reads whose data is
    rendered once and kept (the session directory's views), so only `meta` is new."""
    # `meta` as `Meta` renders it, without building the model.
    rendered_meta = orjson.dumps({"timestamp": iso(utcnow()), "requestId": request_id_var.get()})
    body = b"".join((_OK_HEAD, data, b',"meta":', rendered_meta, b"}"))
    return Response(body, status, media_type="application/json")


def paged(items: list[T], params: PageParams, total: int) -> PageEnvelope[T]:
    return PageEnvelope[T](
        data=items,
        pagination=Pagination(
            page=params.page,
            limit=params.limit,
            total=total,
            total_pages=total_pages(total, params.limit),
        ),
        meta=meta(),
    )


class JSONResponse(StarletteJSONResponse):
    """orjson-rendered JSON (16x the standard library here)."""

    def render(self, content: Any) -> bytes:
        return wire_json.dumps(content)


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details), meta=meta())
    return JSONResponse(body.model_dump(mode="json", by_alias=True), status, headers=headers)


class Deleted(CamelModel):
    id: str
    deleted: Literal[True] = True
