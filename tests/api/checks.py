"""Assertions on the contract's envelope, shared by the API, key and kit tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from fastapi.routing import APIRoute

REQUEST_ID_RE = re.compile(r"^req_[0-9A-HJKMNP-TV-Z]{26}$")
CODE_RE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


def assert_meta(response: httpx.Response) -> dict[str, Any]:
    """`meta: {timestamp, requestId}` in the body, the same id in the X-Request-Id header."""
    body = response.json()
    assert isinstance(body, dict), response.text
    meta = body.get("meta")
    assert isinstance(meta, dict), response.text
    timestamp = meta.get("timestamp")
    assert isinstance(timestamp, str), response.text
    assert timestamp.endswith("Z"), timestamp
    assert datetime.fromisoformat(timestamp.replace("Z", "+00:00")).tzinfo is not None
    request_id = meta.get("requestId")
    assert isinstance(request_id, str), response.text
    assert request_id, response.text
    assert response.headers.get("x-request-id") == request_id
    return body


def assert_ok(response: httpx.Response, status: int = 200) -> Any:
    """A success envelope with this status; returns `data`."""
    assert response.status_code == status, response.text
    body = assert_meta(response)
    assert body["success"] is True, response.text
    assert "data" in body, response.text
    assert "error" not in body, response.text
    return body["data"]


def assert_page(response: httpx.Response) -> tuple[list[Any], dict[str, int]]:
    """A paginated success envelope; returns `(data, pagination)`."""
    data = assert_ok(response)
    assert isinstance(data, list), response.text
    pagination = response.json()["pagination"]
    assert set(pagination) == {"page", "limit", "total", "totalPages"}, pagination
    return data, pagination


def assert_error(
    response: httpx.Response, status: int | None = None, code: str | None = None
) -> dict[str, Any]:
    """An error envelope (4xx unless `status` says otherwise); returns `error`."""
    assert "Traceback" not in response.text, response.text
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = assert_meta(response)
    assert body["success"] is False, response.text
    assert "data" not in body, response.text
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str), error
    assert CODE_RE.fullmatch(error["code"]), error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    if code is not None:
        assert error["code"] == code, (response.status_code, response.text)
    return dict(error)


def api_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path template) of the app's HTTP routes that are in the schema."""
    found: list[tuple[str, str]] = []

    def walk(routes: Any) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                if route.include_in_schema:
                    found.extend((method, route.path) for method in sorted(route.methods))
                continue
            # FastAPI 0.16x keeps an included router whole rather than copying its routes.
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)

    walk(app.routes)
    return sorted(set(found))


def problem(check: Callable[..., object], *args: Any, **kwargs: Any) -> str | None:
    """Run one check; its assertion message, or None when it holds.

    Lets one test try many cases on one app and report every case that fails.
    """
    try:
        check(*args, **kwargs)
    except AssertionError as exc:
        return str(exc)[:400] or "assertion failed"
    return None


def tolerant_client(app: Any, key: str | None) -> httpx.AsyncClient:
    """A client on the app that gets a 500 as a response instead of the app's exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"X-API-Key": key} if key else {}
    return httpx.AsyncClient(transport=transport, base_url="http://openwa.test", headers=headers)
