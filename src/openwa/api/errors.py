"""One mapping from every failure to the error envelope; nothing reaches a client raw."""

from __future__ import annotations

import errno
import socket
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from openwa.api.envelope import error_response
from openwa.api.forwarding import Forwarder
from openwa.db.commits import committed_in_request
from openwa.db.engine import conflict_detail, lost_to_a_conflict, transient
from openwa.errors import OpenWAError, OwnedElsewhere
from openwa.kit.schema import NUL_ERROR, SURROGATE_ERROR
from openwa.kit.wire_json import well_formed

log = structlog.get_logger(__name__)

# Starlette's own 400s (a multipart body it cannot parse, a bad boundary) are
# validation failures of the body in the contract's terms.
_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def validation_details(errors: Any) -> list[dict[str, str]]:
    """Each failing field as `{field, message, type}`; inputs are never echoed back."""
    details = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            loc = loc[:1]  # the rest is a character offset, not a field
        if error.get("type") in (NUL_ERROR, SURROGATE_ERROR):
            loc.append(str((error.get("ctx") or {}).get("where", "")))
        details.append(
            {
                # A path names keys of the body, which may hold half a character (a lone
                # surrogate): the answer must still be UTF-8.
                "field": well_formed(".".join(loc)) or "request",
                "message": well_formed(str(error.get("msg", "invalid"))),
                "type": str(error.get("type", "invalid")),
            }
        )
    return details


async def _openwa_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenWAError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        400, "VALIDATION_ERROR", "Request validation failed", validation_details(exc.errors())
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI's 400 for a body it could not read: the client went away mid-body.
        return unexpected_response(exc.__cause__, request.url.path)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
    if exc.status_code == 400 and "parsing the body" in message:
        # FastAPI's word for a body it could not decode (bad UTF-8, absurd nesting).
        return error_response(
            400,
            "VALIDATION_ERROR",
            "Request validation failed",
            [{"field": "body", "message": "not valid UTF-8 JSON", "type": "json_invalid"}],
        )
    headers = dict(exc.headers or {})
    details = None
    if exc.status_code == 400:
        details = [{"field": "body", "message": message, "type": "body_invalid"}]
        message = "Request validation failed"
    if exc.status_code == 404:
        message = "No such route"
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, code, message, details, headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette names only those of the
    first route that matched the path, and one path often has a route per method."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_response(exc, request.url.path)


# What the logs and metrics record for a request its client abandoned (nginx's number).
CLIENT_CLOSED = 499


def unexpected_outcome(exc: BaseException) -> tuple[int, str]:
    """The status and code of an exception nothing else mapped: a 500, unless the
    database failed for a reason of the moment (`db.engine.transient`: a conflict with
    other work it broke by rolling this call's transaction back, SQLite busy past its
    timeout, the server restarting or out of reach) in a call that had committed
    nothing before (`db/commits.py`). That call wrote nothing and may well pass when
    tried again: a 503 NOT_READY says so, as for a commit that fails
    (`DatabaseUnavailable`)."""
    if isinstance(exc, ClientDisconnect):
        return CLIENT_CLOSED, "CLIENT_CLOSED_REQUEST"
    if _of_the_moment(exc) and not committed_in_request():
        return 503, "NOT_READY"
    return 500, "INTERNAL_ERROR"


_NETWORK_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _of_the_moment(exc: BaseException) -> bool:
    """The database's failures of the moment (`db.engine.transient`), and a connection
    refused, reset or timed out on its way there (asyncpg lets those through as they
    are). Not any `OSError`: a full or failing disk is no reason to try again."""
    if isinstance(exc, (DBAPIError, PoolTimeout)):
        return transient(exc)
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    # A host unreachable or a network down, or asyncio's "Multiple exceptions" when every
    # address of a name refused (no errno): the network's. Not any errno-less OSError:
    # obstore raises its disk errors so.
    if type(exc) is not OSError:
        return False
    if exc.errno is None:
        return str(exc).startswith("Multiple exceptions:")
    return exc.errno in _NETWORK_ERRNOS


def unexpected_response(exc: BaseException, path: str | None) -> Response:
    status, code = unexpected_outcome(exc)
    if status == CLIENT_CLOSED:
        # The client went away mid-request (an upload cut short): nobody reads the
        # answer, and nothing failed on our side.
        log.info("client_disconnected", path=path)
        return error_response(status, code, "The client closed the request")
    if status == 503:
        conflict = lost_to_a_conflict(exc)
        log.warning(
            "database_conflict" if conflict else "database_unavailable",
            path=path,
            error_type=type(exc).__name__,
            exc_info=None if conflict else exc,
            **conflict_detail(exc),
        )
        if conflict:
            message = "The database gave up on this call in a conflict with other work"
        elif isinstance(exc, DBAPIError):
            message = "The database could not be reached for this call"
        else:  # a connection refused, reset or timed out, on its way to the database
            message = "The database could not be reached or did not answer"
        message += "; try again"
        return error_response(status, code, message, headers={"Retry-After": "1"})
    log.error("unhandled_error", path=path, error_type=type(exc).__name__, exc_info=exc)
    return error_response(status, code, "Internal error; the request id is in the logs")


def install_error_handlers(app: FastAPI, forwarder: Forwarder | None = None) -> None:
    """`forwarder` (clustered): a live call for a session another instance runs is
    answered by that instance instead of as a 409 (api/forwarding.py)."""
    app.add_exception_handler(OpenWAError, _openwa_error)
    if forwarder is not None:
        app.add_exception_handler(OwnedElsewhere, forwarder.handle)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
