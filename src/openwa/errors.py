"""Domain errors carrying the contract's stable codes.

Services raise these; one handler at the HTTP edge renders the error envelope, so no
service ever builds an HTTP response or raises `HTTPException`.
"""

from __future__ import annotations

from typing import Any


class OpenWAError(Exception):
    """Base of every error a client may see; `code` is the contract's UPPER_SNAKE code."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(OpenWAError):
    status, code, message = 400, "VALIDATION_ERROR", "Request validation failed"


class InvalidChatId(OpenWAError):
    status, code, message = 400, "INVALID_CHAT_ID", "Not a WhatsApp address"


class Unauthorized(OpenWAError):
    status, code, message = 401, "UNAUTHORIZED", "Missing or unknown API key"


class Forbidden(OpenWAError):
    status, code, message = 403, "FORBIDDEN", "This key may not do that"


class NotFound(OpenWAError):
    status, code, message = 404, "NOT_FOUND", "Not found"


class SessionNotFound(NotFound):
    code, message = "SESSION_NOT_FOUND", "Session not found"


class EventNotFound(NotFound):
    code, message = (
        "NOT_FOUND",
        "No such event in the log (unknown, pruned, or not visible to this key)",
    )


class KeyNotFound(NotFound):
    code, message = "NOT_FOUND", "API key not found"


class SessionNotReady(OpenWAError):
    status, code, message = 409, "SESSION_NOT_READY", "Session is not ready"


class OwnedElsewhere(SessionNotReady):
    """Another instance holds the session's lease: a live call must go to it (`url`,
    when known). The HTTP edge forwards it there; a client sees this only when that
    fails or the request was forwarded already."""

    message = "The session runs on another instance"

    def __init__(
        self, message: str | None = None, *, details: Any = None, url: str | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.url = url


class DatabaseUnavailable(OpenWAError):
    """The unit of work could not commit (database down, locked past the timeout): the
    request wrote nothing and may be sent again."""

    status, code, message = 503, "NOT_READY", "The database could not commit; try again"


class SessionExists(OpenWAError):
    status, code, message = 409, "SESSION_EXISTS", "A session with that name exists"


class SessionLimitReached(OpenWAError):
    status, code, message = 409, "SESSION_LIMIT_REACHED", "MAX_SESSIONS sessions are running"


class WebhookLimitReached(OpenWAError):
    status, code, message = (
        409,
        "WEBHOOK_LIMIT_REACHED",
        "The change would pass WEBHOOK_MAX_PER_SESSION webhooks here",
    )


class QrNotAvailable(OpenWAError):
    status, code, message = 409, "QR_NOT_AVAILABLE", "The session shows no QR code now"


class PayloadTooLarge(OpenWAError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "Request body is over the limit"


class UnsupportedMediaType(OpenWAError):
    status, code, message = 415, "UNSUPPORTED_MEDIA_TYPE", "Content type not allowed"


class NotSupported(OpenWAError):
    status, code, message = 501, "NOT_SUPPORTED", "The session's engine cannot do this"


class EngineError(OpenWAError):
    status, code, message = 422, "ENGINE_ERROR", "The engine refused the operation"


class MessageNotFound(NotFound):
    code, message = "MESSAGE_NOT_FOUND", "Message not found"


class WebhookNotFound(NotFound):
    code, message = "WEBHOOK_NOT_FOUND", "Webhook not found"


class IdempotencyConflict(OpenWAError):
    status, code, message = (
        409,
        "IDEMPOTENCY_CONFLICT",
        "Idempotency-Key reused with another request",
    )


class MessageNotPending(OpenWAError):
    status, code, message = 409, "MESSAGE_NOT_PENDING", "The message is no longer pending"


class WebhookUrlForbidden(OpenWAError):
    status, code, message = 400, "WEBHOOK_URL_FORBIDDEN", "URL resolves to a forbidden address"


class RateLimited(OpenWAError):
    """Over a rate limit; carries `Retry-After` (whole seconds, at least 1)."""

    status, code, message = 429, "RATE_LIMITED", "Too many requests; try again later"


class TooManyStreams(RateLimited):
    message = "Too many open streams"
