"""Per-request values that the envelope needs wherever a response is built."""

from __future__ import annotations

import re
from contextvars import ContextVar

from openwa.kit.ids import ulid

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# A client's X-Request-Id is echoed only when it is safe to put in logs and headers.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def choose_request_id(given: str | None) -> str:
    if given and _REQUEST_ID_RE.fullmatch(given):
        return given
    return "req_" + ulid()
