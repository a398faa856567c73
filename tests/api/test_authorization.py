"""Who may do what: roles, session scoping, and how a key is presented."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.checks import api_routes, assert_error, assert_ok, assert_page
from tests.fixtures.app import ADMIN_KEY, Api, AppFactory

UNKNOWN_ID = "ses_01JD8X0000000000000000000A"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that only an admin key (and, for instance-wide ones, an unscoped key) may use.
ADMIN_PREFIXES = ("/api/keys", "/api/webhooks", "/api/cluster", "/api/audit")
# Under those prefixes, but for every key: a key reading itself.
ANY_KEY = {"/api/keys/self"}
# Placeholders for path parameters other than the session; 403 must come before lookups.
PLACEHOLDERS = {
    "message_id": "3EB0C0FFEE0123456789",
    "messageId": "3EB0C0FFEE0123456789",
    "webhook_id": "wh_01JD8X0000000000000000000A",
    "webhookId": "wh_01JD8X0000000000000000000A",
    "delivery_id": "1",
    "deliveryId": "1",
    "key_id": "key_01JD8X0000000000000000000A",
    "chat_id": "15550100000@s.whatsapp.net",
    "group_id": "120363000000000000@g.us",
    "contact_id": "15550100000@s.whatsapp.net",
    "phone_number": "15550100000",
}
# Plausible bodies, so that a 403 is not a side effect of an invalid body.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/sessions"): {"name": "new-one", "autoStart": False},
    ("PATCH", "/api/sessions/{id}"): {"config": {"metadata": {"changed": "yes"}}},
    ("POST", "/api/sessions/{id}/pairing-code"): {"phoneNumber": "+1 555 0100 0000"},
    ("POST", "/api/sessions/{id}/mock/disconnect"): {"reason": "test"},
    ("POST", "/api/sessions/{id}/mock/inbound"): {"from": "+1 555 0100 0001", "text": "hi"},
    ("POST", "/api/sessions/{id}/mock/report"): {"kind": "call", "from": "+1 555 0100 0001"},
    ("POST", "/api/sessions/{id}/messages/text"): {"chatId": "+1 555 0100 0001", "text": "hi"},
    ("POST", "/api/sessions/{id}/webhooks"): {"url": "https://example.com/hook"},
    ("POST", "/api/webhooks"): {"url": "https://example.com/hook"},
    ("POST", "/api/keys"): {"name": "escalate", "role": "admin"},
}


def is_stream(path: str) -> bool:
    return path.endswith("/stream")


def fill(path: str, ref: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return ref if name == "id" else PLACEHOLDERS.get(name, "x1")

    return re.sub(r"\{(\w+)\}", value, path)


def writes(api: Api) -> list[tuple[str, str]]:
    return [(m, p) for m, p in api_routes(api.app) if m in WRITE_METHODS]


async def call(api: Api, method: str, template: str, ref: str, key: str) -> httpx.Response:
    body = BODIES.get((method, template), {} if method != "DELETE" else None)
    return await api.request(method, fill(template, ref), key=key, json=body)


async def snapshot(api: Api) -> dict[str, Any]:
    """What a write would change: sessions (status, config), keys and webhooks."""
    sessions, _ = assert_page(await api.request("GET", "/api/sessions?limit=100"))
    keys, _ = assert_page(await api.request("GET", "/api/keys?limit=100"))
    result: dict[str, Any] = {
        "sessions": sorted(
            (s["id"], s["name"], s["status"], repr(s["config"]), s["phoneNumber"]) for s in sessions
        ),
        "keys": sorted((k["id"], k["role"], repr(k["sessions"])) for k in keys),
    }
    paths = {p for _, p in api_routes(api.app)}
    if "/api/webhooks" in paths:
        hooks, _ = assert_page(await api.request("GET", "/api/webhooks?limit=100"))
        result["webhooks"] = sorted(h["id"] for h in hooks)
    if "/api/sessions/{id}/webhooks" in paths:
        for s in sessions:
            hooks, _ = assert_page(await api.request("GET", f"/api/sessions/{s['id']}/webhooks"))
            result[f"webhooks {s['name']}"] = sorted(h["id"] for h in hooks)
    return result


# --- the viewer role -------------------------------------------------------------------


async def test_viewer_may_not_write_anything(api: Api) -> None:
    await api.create_session("idle", autoStart=False, config={"metadata": {"a": "b"}})
    running = await api.create_session("running")
    await api.wait_status("running", "ready")
    viewer = await api.new_key("viewer")
    operator = await api.new_key("operator")
    before = await snapshot(api)

    routes = writes(api)
    assert len(routes) >= 12, routes
    refused = 0
    for method, template in routes:
        for ref in ("idle", "running", running["id"]):
            if "{id}" not in template and ref != "idle":
                continue
            response = await call(api, method, template, ref, viewer)
            assert_error(response, 403, "FORBIDDEN")
            refused += 1
    # Admin-only reads are refused too.
    for method, template in api_routes(api.app):
        if method != "GET" or template in ANY_KEY or is_stream(template):
            continue
        if template.startswith(ADMIN_PREFIXES):
            response = await call(api, method, template, "idle", viewer)
            assert_error(response, 403, "FORBIDDEN")
    assert refused >= 12

    assert await snapshot(api) == before
    assert (await api.session("running"))["status"] == "ready"
    assert_ok(await api.request("GET", "/api/sessions", key=operator))


async def test_viewer_may_read_every_session_route(api: Api) -> None:
    idle = await api.create_session("idle", autoStart=False)
    viewer = await api.new_key("viewer")
    for method, template in api_routes(api.app):
        if method != "GET" or is_stream(template):
            continue
        if template.startswith(ADMIN_PREFIXES) and template not in ANY_KEY:
            continue
        response = await call(api, method, template, "idle", viewer)
        # Allowed: whatever the answer, it is not about the key.
        assert response.status_code not in (401, 403), (template, response.text)
        assert response.status_code < 500, (template, response.text)
    assert (await api.session(idle["id"]))["status"] == "created"


async def test_viewer_may_read(api: Api) -> None:
    idle = await api.create_session("idle", autoStart=False)
    viewer = await api.new_key("viewer")
    items, pagination = assert_page(await api.request("GET", "/api/sessions", key=viewer))
    assert [item["id"] for item in items] == [idle["id"]]
    assert pagination["total"] == 1
    for ref in ("idle", idle["id"]):
        data = assert_ok(await api.request("GET", f"/api/sessions/{ref}", key=viewer))
        assert data["id"] == idle["id"]
        # A GET: allowed; there is just no QR on a session that never started.
        response = await api.request("GET", f"/api/sessions/{ref}/qr", key=viewer)
        assert_error(response, 409, "QR_NOT_AVAILABLE")
    response = await api.request("GET", "/api/sessions/nosuch", key=viewer)
    assert_error(response, 404, "SESSION_NOT_FOUND")


async def test_viewer_may_read_a_qr(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("scan-me")
    await api.wait_status("scan-me", "qr_ready")
    viewer = await api.new_key("viewer")
    data = assert_ok(await api.request("GET", "/api/sessions/scan-me/qr", key=viewer))
    assert data["image"].startswith("data:image/png;base64,")


# --- the operator role -----------------------------------------------------------------


async def test_operator_may_run_sessions(slow_api: Api) -> None:
    api = slow_api
    operator = await api.new_key("operator")

    async def do(method: str, url: str, body: Any = None, status: int = 200) -> Any:
        return assert_ok(await api.request(method, url, key=operator, json=body), status)

    created = await do("POST", "/api/sessions", {"name": "ops", "autoStart": False}, 201)
    assert created["status"] == "created"
    await do("PATCH", "/api/sessions/ops", {"config": {"metadata": {"team": "ops"}}})
    await do("POST", "/api/sessions/ops/start")
    await api.wait_status("ops", "qr_ready")
    await do("POST", "/api/sessions/ops/mock/scan")
    await api.wait_status("ops", "ready")
    await do("POST", "/api/sessions/ops/mock/disconnect", {"reason": "blip"})
    await api.wait_status("ops", "ready")
    await do("POST", "/api/sessions/ops/restart")
    await do("POST", "/api/sessions/ops/stop")
    await do("POST", "/api/sessions/ops/logout")
    await do("DELETE", f"/api/sessions/{created['id']}")
    assert_error(await api.request("GET", "/api/sessions/ops"), 404, "SESSION_NOT_FOUND")


async def test_operator_may_not_manage_keys(api: Api) -> None:
    operator = await api.new_key("operator")
    for method, url, body in [
        ("GET", "/api/keys", None),
        ("POST", "/api/keys", {"name": "x", "role": "viewer"}),
        ("DELETE", "/api/keys/key_01JD8X0000000000000000000A", None),
    ]:
        assert_error(await api.request(method, url, key=operator, json=body), 403, "FORBIDDEN")


# --- keys scoped to sessions -------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_scoped_key_sees_only_its_sessions(api: Api, role: str) -> None:
    a = await api.create_session("session-a", autoStart=False)
    b = await api.create_session("session-b")
    await api.wait_status("session-b", "ready")
    for i in range(3):
        await api.create_session(f"extra-{i}", autoStart=False)
    scoped = await api.new_key(role, sessions=["session-a"])
    before = await snapshot(api)

    items, pagination = assert_page(await api.request("GET", "/api/sessions", key=scoped))
    assert [item["id"] for item in items] == [a["id"]]
    assert pagination == {"page": 1, "limit": 20, "total": 1, "totalPages": 1}
    items, pagination = assert_page(
        await api.request("GET", "/api/sessions?page=2&limit=1", key=scoped)
    )
    assert items == []
    assert pagination["total"] == 1

    response = await api.request(
        "POST", "/api/sessions", key=scoped, json={"name": "mine-now", "autoStart": False}
    )
    assert_error(response, 403, "FORBIDDEN")

    session_routes = [(m, p) for m, p in api_routes(api.app) if "{id}" in p and not is_stream(p)]
    assert len(session_routes) >= 12, session_routes
    for method, template in session_routes:
        for ref in ("session-b", b["id"], "nosuch", UNKNOWN_ID):
            response = await call(api, method, template, ref, scoped)
            assert_error(response, 403, "FORBIDDEN")
            # Nothing about session B leaks through the refusal.
            if ref != b["id"]:
                assert b["id"] not in response.text, (method, template, response.text)

    assert await snapshot(api) == before
    assert (await api.session("session-b"))["status"] == "ready"

    # Its own session is fine.
    for ref in ("session-a", a["id"]):
        assert_ok(await api.request("GET", f"/api/sessions/{ref}", key=scoped))
    if role != "viewer":
        patched = await api.request(
            "PATCH", "/api/sessions/session-a", key=scoped, json={"config": {"markOnline": True}}
        )
        assert assert_ok(patched)["config"]["markOnline"] is True


async def test_scoped_key_reads_only_its_events(api: Api) -> None:
    a = await api.create_session("session-a", autoStart=False)
    b = await api.create_session("session-b", autoStart=False)
    assert_ok(await api.request("POST", "/api/sessions/session-b/start"))
    scoped = await api.new_key("viewer", sessions=["session-a"])
    everything = assert_ok(await api.request("GET", "/api/events?limit=1000"))["events"]
    assert {e["sessionId"] for e in everything} >= {a["id"], b["id"]}
    for query in (
        "",
        "?sessions=session-b",
        f"?sessions={b['id']}",
        "?sessions=session-a,session-b",
    ):
        page = assert_ok(await api.request("GET", f"/api/events{query}", key=scoped))
        assert {e["sessionId"] for e in page["events"]} <= {a["id"]}, (query, page)


async def test_scoped_admin_cannot_widen_its_scope(api: Api) -> None:
    """An admin key limited to sessions may not mint a key that sees more than it does."""
    await api.create_session("session-a", autoStart=False)
    await api.create_session("session-b", autoStart=False)
    scoped = await api.new_key("admin", sessions=["session-a"])
    a_id = (await api.session("session-a"))["id"]
    for body in (
        {"name": "wider", "role": "admin"},
        {"name": "wider", "role": "operator"},
        {"name": "other", "role": "viewer", "sessions": ["session-b"]},
        {"name": "both", "role": "viewer", "sessions": ["session-a", "session-b"]},
    ):
        response = await api.request("POST", "/api/keys", key=scoped, json=body)
        if response.status_code == 201:
            minted = response.json()["data"]
            assert minted["sessions"] is not None, (body, minted)
            assert set(minted["sessions"]) <= {a_id}, (body, minted)
        else:
            assert_error(response, 403, "FORBIDDEN")


async def test_scoped_admin_cannot_use_instance_wide_routes(api: Api) -> None:
    """Instance-wide webhooks see every session's events: not for a key limited to some."""
    await api.create_session("session-a", autoStart=False)
    scoped = await api.new_key("admin", sessions=["session-a"])
    instance = [(m, p) for m, p in api_routes(api.app) if p.startswith("/api/webhooks")]
    for method, template in instance:
        response = await call(api, method, template, "session-a", scoped)
        assert_error(response, 403, "FORBIDDEN")


async def test_scoped_viewer_reads_only_its_session(api: Api) -> None:
    a = await api.create_session("session-a", autoStart=False)
    await api.create_session("session-b", autoStart=False)
    scoped = await api.new_key("viewer", sessions=[a["id"]])
    assert_ok(await api.request("GET", "/api/sessions/session-a", key=scoped))
    assert_error(await api.request("GET", "/api/sessions/session-b", key=scoped), 403, "FORBIDDEN")
    response = await api.request("POST", "/api/sessions/session-a/start", key=scoped)
    assert_error(response, 403, "FORBIDDEN")
    assert (await api.session("session-a"))["status"] == "created"


# --- presenting a key ------------------------------------------------------------------


async def test_missing_or_wrong_key_is_401(api: Api) -> None:
    await api.create_session("guarded", autoStart=False)
    cases: list[dict[str, str]] = [
        {},
        {"X-API-Key": "wrong-key-0123456789abcdef"},
        {"X-API-Key": ADMIN_KEY + "x"},
        {"X-API-Key": ADMIN_KEY.upper()},
        {"Authorization": "Bearer wrong-key-0123456789abcdef"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": ADMIN_KEY},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"X-API-Key": ""},
    ]
    routes = [
        ("GET", "/api/sessions"),
        ("GET", "/api/sessions/guarded"),
        ("POST", "/api/sessions/guarded/start"),
        ("DELETE", "/api/sessions/guarded"),
        ("GET", "/api/keys"),
        ("POST", "/api/keys"),
    ]
    for headers in cases:
        for method, url in routes:
            response = await api.request(method, url, key=None, headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")
    assert (await api.session("guarded"))["status"] == "created"


async def test_unauthenticated_create_does_not_create(api: Api) -> None:
    response = await api.request("POST", "/api/sessions", key=None, json={"name": "sneaky"})
    assert_error(response, 401, "UNAUTHORIZED")
    response = await api.request(
        "POST", "/api/sessions", key="not-a-key-0123456789", json={"name": "sneaky"}
    )
    assert_error(response, 401, "UNAUTHORIZED")
    _, pagination = assert_page(await api.request("GET", "/api/sessions"))
    assert pagination["total"] == 0


async def test_bearer_token_works(api: Api) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert_page(await api.request("GET", "/api/sessions", key=None, headers=bearer))
    assert_page(await api.request("GET", "/api/keys", key=None, headers=bearer))
    lower = {"Authorization": f"bearer {ADMIN_KEY}"}
    assert_page(await api.request("GET", "/api/sessions", key=None, headers=lower))
    viewer = await api.new_key("viewer")
    response = await api.request(
        "POST",
        "/api/sessions",
        key=None,
        headers={"Authorization": f"Bearer {viewer}"},
        json={"name": "x"},
    )
    assert_error(response, 403, "FORBIDDEN")


async def test_open_routes_need_no_key(api: Api) -> None:
    for path in ("/health", "/health/ready", "/docs", "/openapi.json", "/metrics"):
        response = await api.request("GET", path, key=None)
        assert response.status_code == 200, (path, response.text)
        # A wrong key does not close them either.
        response = await api.request("GET", path, key="wrong-key-0123456789abcdef")
        assert response.status_code == 200, (path, response.text)


async def test_metrics_can_require_a_key(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(metrics_require_key=True)
    try:
        assert_error(await api.request("GET", "/metrics", key=None), 401, "UNAUTHORIZED")
        assert_error(await api.request("GET", "/metrics", key="wrong-key-0123456789"), 401)
        response = await api.request("GET", "/metrics")
        assert response.status_code == 200
        assert "openwa_http_requests_total" in response.text
        response = await api.request(
            "GET", "/metrics", key=None, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert response.status_code == 200
        for path in ("/health", "/health/ready", "/openapi.json", "/docs"):
            assert (await api.request("GET", path, key=None)).status_code == 200
    finally:
        await AppFactory.stop(api, manager)
