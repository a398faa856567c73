"""structlog set-up: JSON lines for machines, a readable console for people.

Every line passes through `openwa.kit.redact` first, ours and uvicorn's alike: the
WebSocket's access line carries `/ws?apiKey=...`, and a URL we log may carry a user
name, a password or a token.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from openwa.api.context import request_id_var
from openwa.kit.redact import redact_text

# uvicorn's loggers: they do not propagate to the root handler (uvicorn gives them
# handlers of their own), so the filter is set on each, where every record passes.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class RedactFilter(logging.Filter):
    """Masks keys and credentials in a standard-library log record before any handler
    formats it (the message is formatted here once, with its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: logging reports it as it would
        redacted = redact_text(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


_REDACT = RedactFilter()


def install_redaction() -> None:
    """Set the filter on the root handlers and on uvicorn's loggers (idempotent).

    Called after logging is configured, and again by `openwa serve` once uvicorn has
    set up its own loggers."""
    for handler in logging.getLogger().handlers:
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def _redact(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog's side: every string value of the event, the traceback included."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_text(value)
    return event


def _add_request_id(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id != "-":
        event.setdefault("request_id", request_id)
    return event


def configure_logging(level: str, fmt: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s", force=True)
    # Alembic narrates every migration step at INFO; the outcome is enough.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda o, **_: orjson.dumps(o).decode()
        )
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    install_redaction()
