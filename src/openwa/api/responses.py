"""The error responses of the OpenAPI document, derived in one place.

A route declares only the errors particular to what it does (`errors(SessionExists)`,
the classes of `openwa.errors`, or one of the sets below); `error_responses` adds what
every `/api` route can answer and what its path parameters, body and headers imply, so
the document lists every status a route can answer and nothing it cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import RouteContext

from openwa.errors import (
    EngineError,
    Forbidden,
    IdempotencyConflict,
    InvalidChatId,
    KeyNotFound,
    MessageNotFound,
    NotSupported,
    OpenWAError,
    PayloadTooLarge,
    SessionNotFound,
    SessionNotReady,
    Unauthorized,
    ValidationFailed,
    WebhookNotFound,
)


@dataclass(frozen=True)
class Answer:
    """One error a route can answer: its status, the contract's code, a typical message."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, error: type[OpenWAError] | Answer) -> Answer:
        if isinstance(error, Answer):
            return error
        return cls(error.status, error.code, error.message)


Declared = type[OpenWAError] | Answer

RATE_LIMITED = Answer(429, "RATE_LIMITED", "Over this key's rate limit; retry after `Retry-After`")
NOT_READY = Answer(503, "NOT_READY", "The instance is starting or draining; try again")
# Answered for paths and methods that are no operation (listed in `components.responses`).
METHOD_NOT_ALLOWED = Answer(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
NO_SUCH_ROUTE = Answer(404, "NOT_FOUND", "No such route")
DELIVERY_NOT_FOUND = Answer(404, "NOT_FOUND", "delivery not found")
CONTACT_NOT_FOUND = Answer(404, "NOT_FOUND", "contact not found")
MEDIA_NOT_FOUND = Answer(404, "NOT_FOUND", "this message has no stored media")

# What every `/api` route may answer: a malformed request, no key, a key that may not
# (role, session scope, `allowedCidrs`), over a rate limit, an instance not serving.
EVERY_API_ROUTE: tuple[Declared, ...] = (
    ValidationFailed,
    Unauthorized,
    Forbidden,
    RATE_LIMITED,
    NOT_READY,
)
# A call to the session's engine: the session must be ready, the engine must be able to,
# and the engine may refuse.
ENGINE_CALL: tuple[Declared, ...] = (SessionNotReady, EngineError, NotSupported)
# Unknown ids by path parameter.
_NOT_FOUND: dict[str, tuple[Declared, ...]] = {
    "id": (SessionNotFound,),
    "message_id": (MessageNotFound,),
    "webhook_id": (WebhookNotFound,),
    "delivery_id": (DELIVERY_NOT_FOUND,),
    "key_id": (KeyNotFound,),
}
# Path parameters that are WhatsApp addresses or phone numbers.
_ADDRESSES = {"chat_id", "contact_id", "group_id", "phone_number"}

_DESCRIPTIONS = {
    400: "The request failed validation (`details` lists each field), or a value is refused",
    401: "No key, an unknown key or an expired key",
    403: "The key's role, session scope or `allowedCidrs` do not allow this",
    404: "An id in the path is unknown (or, for a path that is no route, NOT_FOUND)",
    405: "The path does not take this method (the `Allow` header lists those it takes)",
    409: "The state of the resource does not allow this now",
    413: "The body (or the media) is over the configured limit",
    415: "The content or media type is not accepted",
    422: "The session's engine refused the operation (`details` say why)",
    429: (
        "Over the key's rate limit (`RATE_LIMIT_*`, per role), too many failed "
        "authentications from this address, or a stream cap; retry after `Retry-After`"
    ),
    501: "The session's engine cannot do this (`details` name the engine and capability)",
    503: "The instance is starting or draining, or the database could not commit",
}
_HEADERS: dict[int, dict[str, Any]] = {
    405: {"Allow": {"description": "The methods the path takes", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Whole seconds (at least 1) until the limit's window ends",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"


class _Declared(dict[str, Any]):
    """One status of a route's `responses=`, remembering the errors the route declared
    (kept through FastAPI's merging of router and route responses, and through `**`)."""

    answers: tuple[Answer, ...] = ()


def errors(*declared: Declared) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the errors particular to it (the rest are derived)."""
    answers = [Answer.of(error) for error in declared]
    responses: dict[int | str, dict[str, Any]] = {}
    for status in dict.fromkeys(answer.status for answer in answers):
        response = _Declared(description=_DESCRIPTIONS.get(status, "Error"))
        response.answers = tuple(answer for answer in answers if answer.status == status)
        responses[status] = response
    return responses


def route_answers(route: RouteContext) -> list[Answer]:
    """Every error the route can answer: common to `/api`, implied, and declared."""
    answers: list[Answer] = []
    path = str(route.path_format)
    if path.startswith("/api"):
        answers += map(Answer.of, EVERY_API_ROUTE)
    for name in re.findall(r"{(\w+)}", path):
        answers += map(Answer.of, _NOT_FOUND.get(name, ()))
        if name in _ADDRESSES:
            answers.append(Answer.of(InvalidChatId))
    if route.body_field is not None or (route.methods or set()) & {"POST", "PATCH", "PUT"}:
        # The body limit (MAX_BODY_BYTES) holds for every body, however it is read.
        answers.append(Answer.of(PayloadTooLarge))
    headers = {
        (param.alias or param.name).lower()
        for param in get_flat_params(route.dependant)
        if isinstance(param.field_info, params.Header)
    }
    if "idempotency-key" in headers:
        answers.append(Answer.of(IdempotencyConflict))
    for response in route.responses.values():
        answers += getattr(response, "answers", ())
    return list(dict.fromkeys(answers))


def document(answers: Iterable[Answer]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses for these errors: the error envelope, one example per code."""
    by_status: dict[int, list[Answer]] = {}
    for answer in answers:
        by_status.setdefault(answer.status, []).append(answer)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        examples: dict[str, Any] = {}
        for answer in by_status[status]:
            # One example per code; a route's own message wins over the generic one.
            examples[answer.code] = {"summary": answer.message, "value": _example(answer)}
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {
                "application/json": {
                    "schema": {"$ref": ERROR_ENVELOPE_REF},
                    "examples": examples,
                }
            },
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[status] = response
    return responses


def _example(answer: Answer) -> dict[str, Any]:
    details: Any = None
    if answer.code == "VALIDATION_ERROR":
        details = [{"field": "body.chatId", "message": "Field required", "type": "missing"}]
    return {
        "success": False,
        "error": {"code": answer.code, "message": answer.message, "details": details},
        "meta": {"timestamp": "2026-11-26T10:00:00.000Z", "requestId": "req_1"},
    }
