"""Pure ASGI middleware: request ids, security headers, the body size limit, draining,
request metrics.

Pure ASGI (not BaseHTTPMiddleware) keeps the request in one task, so the request id
context variable is visible to the route and its error handlers, and streaming
bodies are not buffered.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openwa.api.context import choose_request_id, request_id_var
from openwa.api.docs import DOCS_CSP
from openwa.api.envelope import error_response
from openwa.api.errors import unexpected_response
from openwa.api.metrics import Metrics
from openwa.dashboard import DASHBOARD_CSP
from openwa.db.commits import begin_request, end_request

log = structlog.get_logger(__name__)

Headers = tuple[tuple[bytes, bytes], ...]

_COMMON: Headers = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NOTHING_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Built once: the hottest route pays for one tuple splice, not for string building.
# JSON answers load nothing, so their policy allows nothing; API answers carry data
# that must not sit in a shared or browser cache.
API_HEADERS: Headers = (*_COMMON, _NOTHING_CSP, (b"cache-control", b"no-store"))
OTHER_HEADERS: Headers = (*_COMMON, _NOTHING_CSP)
DOCS_HEADERS: Headers = (*_COMMON, (b"content-security-policy", DOCS_CSP.encode("latin-1")))
# The dashboard's files change with each release: revalidated, never used stale.
DASHBOARD_HEADERS: Headers = (
    *_COMMON,
    (b"content-security-policy", DASHBOARD_CSP.encode("latin-1")),
    (b"cache-control", b"no-cache"),
)
SECURITY_HEADER_NAMES = frozenset(name for name, _ in API_HEADERS)


def security_headers(path: str) -> Headers:
    """The security headers for a path: `/docs` and `/dashboard` need their pages'
    scripts and styles."""
    if path.startswith("/api"):
        return API_HEADERS
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_HEADERS
    if path == "/dashboard" or path.startswith("/dashboard/"):
        return DASHBOARD_HEADERS
    return OTHER_HEADERS


def with_security_headers(headers: Any, extra: Headers) -> list[tuple[bytes, bytes]]:
    """A route's own security headers win (media downloads set their own sandbox CSP,
    the event stream its own Cache-Control); the rest are added."""
    own = [name for name, _ in headers if name in SECURITY_HEADER_NAMES]
    if own:
        return [*headers, *(header for header in extra if header[0] not in own)]
    return [*headers, *extra]


def nul_in_target(scope: Scope) -> str | None:
    """`path` or `query` when the request's target holds a NUL, else None.

    PostgreSQL refuses NUL in text: one in a path or query value would reach a lookup
    and fail there as a 500. Checked here once for every route (bodies are checked by
    their models). Any `%00` in a query decodes to a NUL: percent-decoding leaves no
    other way to spell one."""
    if "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        return "query"
    return None


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_media_bytes: int,
        metrics: Metrics,
        state: Any,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Media sends carry the media itself (base64 adds a third): their own limit.
        self.max_media_body_bytes = max_media_bytes * 4 // 3 + 1_048_576
        self.metrics = metrics
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(b"x-request-id")
        request_id = choose_request_id(raw_id.decode("latin-1") if raw_id else None)
        token, commits = request_id_var.set(request_id), begin_request()
        started = time.perf_counter()
        status_holder = {"status": 500}
        response_started = {"value": False}
        extra_headers = security_headers(scope["path"])

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started["value"] = True
                status_holder["status"] = message["status"]
                message["headers"] = with_security_headers(
                    message.get("headers") or (), extra_headers
                )
                message["headers"].append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        try:
            if scope["type"] == "http":
                rejection = self._reject(scope, headers)
                if rejection is not None:
                    await rejection(scope, receive, send_with_id)
                    return
                receive = self._limited(receive, self._limit_for(scope))
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Render it here, inside the request's context, so the answer keeps its id.
            response = unexpected_response(exc, scope.get("path"))
            if scope["type"] == "http" and not response_started["value"]:
                await response(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.observe(
                    scope["method"],
                    template,
                    status_holder["status"],
                    time.perf_counter() - started,
                )
            request_id_var.reset(token)
            end_request(commits)

    def _limit_for(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"].endswith("/messages/media"):
            return self.max_media_body_bytes
        return self.max_body_bytes

    def _reject(self, scope: Scope, headers: dict[bytes, bytes]) -> Any:
        if getattr(self.state, "draining", False) and scope["path"].startswith("/api"):
            return error_response(503, "NOT_READY", "The instance is draining")
        where = nul_in_target(scope)
        if where is not None:
            return error_response(
                400,
                "VALIDATION_ERROR",
                "Request validation failed",
                [{"field": where, "message": "holds a NUL character", "type": "value_error"}],
            )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return error_response(400, "VALIDATION_ERROR", "Content-Length is not a number")
            if size > self._limit_for(scope):
                return error_response(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    "Request body is over the limit",
                    {"maxBytes": self._limit_for(scope)},
                )
        return None

    def _limited(self, receive: Receive, limit: int) -> Receive:
        """Count streamed (chunked) bodies too; Content-Length alone can be absent."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException passes through FastAPI's body reading as it is
                    # (anything else becomes a generic 400); it renders as 413.
                    raise HTTPException(413, "Request body is over the limit")
            return message

        return wrapped
