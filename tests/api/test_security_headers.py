"""Security headers on every response, with a Content-Security-Policy per path."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from openwa.api.middleware import API_HEADERS, with_security_headers
from tests.fixtures.app import Api

NOTHING = "default-src 'none'; frame-ancestors 'none'"


def common(response: httpx.Response, path: str) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", path
    assert response.headers.get("x-frame-options") == "DENY", path
    assert response.headers.get("referrer-policy") == "no-referrer", path
    # Each once: a header a route sets is never doubled by the middleware.
    for name in ("x-content-type-options", "content-security-policy", "cache-control"):
        assert len(response.headers.get_list(name)) <= 1, (path, name)


async def test_api_answers_allow_nothing_and_are_not_cached(api: Api) -> None:
    await api.create_session("alice", engine="mock")
    cases = [
        ("GET", "/api/sessions", None, 200),
        ("GET", "/api/sessions/alice", None, 200),
        ("GET", "/api/sessions/nobody", None, 404),
        ("GET", "/api/sessions", "owa_wrong", 401),
        ("POST", "/api/sessions", None, 400),
        ("GET", "/api/nowhere", None, 404),
    ]
    for method, path, key, status in cases:
        kwargs = {"key": key} if key else {}
        response = await api.request(method, path, content=b"{", **kwargs)
        assert response.status_code == status, (path, response.text)
        common(response, path)
        assert response.headers.get("content-security-policy") == NOTHING, path
        assert response.headers.get("cache-control") == "no-store", path


async def test_refused_bodies_carry_the_headers_too(api: Api) -> None:
    too_big = api.settings.max_body_bytes + 1
    response = await api.request(
        "POST", "/api/sessions", headers={"Content-Length": str(too_big)}, content=b"x"
    )
    assert response.status_code == 413, response.text
    common(response, "413")
    assert response.headers.get("content-security-policy") == NOTHING


async def test_other_json_answers_allow_nothing(api: Api) -> None:
    for path in ("/health", "/metrics", "/openapi.json"):
        response = await api.request("GET", path)
        common(response, path)
        assert response.headers.get("content-security-policy") == NOTHING, path


async def test_docs_policy_allows_its_page_and_nothing_else(api: Api) -> None:
    response = await api.request("GET", "/docs", key=None)
    assert response.status_code == 200
    common(response, "/docs")
    policy = dict(
        ([*part.strip().split(" ", 1), ""])[:2]
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["img-src"] == "'self' data:"
    assert policy["connect-src"] == "'self'"
    # The page's inline start-up script is allowed by its hash, not by 'unsafe-inline'.
    assert "unsafe-inline" not in policy["script-src"]
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = await api.request("GET", f"/docs/static/{asset}", key=None)
        assert response.status_code == 200, asset
        common(response, asset)


def test_a_routes_own_policy_wins() -> None:
    """Media downloads set a sandbox policy and the event stream its own Cache-Control."""
    own = [
        (b"content-type", b"text/html"),
        (b"content-security-policy", b"sandbox"),
        (b"cache-control", b"no-cache"),
    ]
    headers = with_security_headers(own, API_HEADERS)
    names = [name for name, _ in headers]
    assert names.count(b"content-security-policy") == 1
    assert names.count(b"cache-control") == 1
    assert (b"content-security-policy", b"sandbox") in headers
    assert (b"cache-control", b"no-cache") in headers
    assert (b"x-content-type-options", b"nosniff") in headers
    assert (b"x-frame-options", b"DENY") in headers
