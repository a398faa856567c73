"""OpenAPI descriptions of the error responses each route can give."""

from __future__ import annotations

import copy
from typing import Any

from openwa.api.envelope import ErrorEnvelope

_EXAMPLES: dict[int, tuple[str, str, str]] = {
    400: ("VALIDATION_ERROR", "Request validation failed", "Body, query or path failed validation"),
    401: ("UNAUTHORIZED", "Missing or unknown API key", "No key, or an unknown key"),
    403: ("FORBIDDEN", "This key may not do that", "Role or session scope forbids it"),
    404: ("SESSION_NOT_FOUND", "Session not found", "Unknown id"),
    409: ("SESSION_NOT_READY", "Session is not ready", "The session's state does not allow it"),
    413: ("PAYLOAD_TOO_LARGE", "Request body is over the limit", "Body over MAX_BODY_BYTES"),
    429: (
        "RATE_LIMITED",
        "over the rate limit of 20 per 1 second; retry after 1 s",
        "Over the key's rate limit (`RATE_LIMIT_*`, per role) or too many failed "
        "authentications from this address; retry after `Retry-After` seconds",
    ),
    501: ("NOT_SUPPORTED", "The session's engine cannot do this", "Engine lacks the capability"),
    422: ("ENGINE_ERROR", "The engine refused the operation", "The engine said no"),
    503: ("NOT_READY", "The instance is starting or draining", "Try again shortly"),
}


def errors(*statuses: int, **overrides: tuple[str, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error envelope with an example per status.

    `overrides` maps `"s409"`-style keys to a (code, message) pair when a route's
    conflict (say) has another code than the default example.
    """
    result: dict[int | str, dict[str, Any]] = {}
    # Every route checks a key, so each may answer 401 and 429 (rate limits).
    for status in dict.fromkeys((400, 401, 429, *statuses)):
        code, message, description = _EXAMPLES[status]
        code, message = overrides.get(f"s{status}", (code, message))
        result[status] = {
            "model": ErrorEnvelope,
            "description": description,
            "content": {
                "application/json": {
                    "example": {
                        "success": False,
                        "error": {"code": code, "message": message, "details": None},
                        "meta": {"timestamp": "2026-11-26T10:00:00.000Z", "requestId": "req_1"},
                    }
                }
            },
        }
    result[429]["headers"] = {
        "Retry-After": {
            "description": "Whole seconds (at least 1) until the limit's window ends",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    return result


def chat_errors(*statuses: int, **overrides: tuple[str, str]) -> dict[int | str, dict[str, Any]]:
    """`errors(...)` for routes taking chat ids or phone numbers: the 400 shows both
    VALIDATION_ERROR and INVALID_CHAT_ID (an id or number that cannot be a WhatsApp one)."""
    responses = errors(*statuses, **overrides)
    content = responses[400]["content"]["application/json"]
    validation = content.pop("example")
    invalid = copy.deepcopy(validation)
    invalid["error"].update(code="INVALID_CHAT_ID", message="Not a WhatsApp address")
    content["examples"] = {
        "VALIDATION_ERROR": {"value": validation},
        "INVALID_CHAT_ID": {"value": invalid},
    }
    responses[400]["description"] = (
        "Body, query or path failed validation, or an id or number is not a WhatsApp address"
    )
    return responses
