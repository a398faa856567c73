"""The audit log: every mutating call, however it ends, and first uses of keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event, select

from openwa.audit.draft import FIRST_USE
from openwa.audit.seen import SeenPairs
from openwa.audit.service import AuditService
from openwa.db.models import AuditRow
from openwa.db.models.audit import KeyAddressRow
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow
from tests.api.checks import api_routes, assert_error, assert_ok, assert_page
from tests.api.test_authorization import BODIES, WRITE_METHODS, fill
from tests.fixtures.app import ADMIN_KEY, Api
from tests.messages.support import data_of, plus, post_text, ready_pair

UNKNOWN_ID = "ses_01JD8X0000000000000000000A"
SECRET = "whsec_" + "c2VjcmV0LXZhbHVlLW5ldmVyLWluLXRoZS1sb2c="


async def entries(api: Api, **filters: str) -> list[dict[str, Any]]:
    """Every audit entry matching `filters`, newest first, read page by page."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await api.request(
            "GET", "/api/audit", params={**filters, "page": str(page), "limit": "100"}
        )
        items, pagination = assert_page(response)
        found.extend(items)
        if page >= pagination["totalPages"]:
            return found
        page += 1


def client_from(api: Api, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(address, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://openwa.test")


async def test_every_mutating_route_leaves_an_entry(api: Api) -> None:
    """Enumerated from the app: a new mutating route that is not audited fails here."""
    routes = [(m, p) for m, p in api_routes(api.app) if m in WRITE_METHODS]
    assert len(routes) >= 20, routes
    for method, template in routes:
        body = BODIES.get((method, template), {} if method != "DELETE" else None)
        if template.endswith("/webhooks"):
            body = {"url": "https://example.com/hook", "secret": SECRET}
        # Sessions that do not exist: every call is refused before it changes anything,
        # and is audited all the same (routes without a session may succeed).
        response = await api.request(method, fill(template, UNKNOWN_ID), json=body)
        assert response.status_code < 500, (template, response.text)
    logged = await entries(api)
    seen = {(e["method"], e["route"]) for e in logged if e["action"] != FIRST_USE}
    missing = [route for route in routes if route not in seen]
    assert not missing, missing
    for entry in logged:
        # A body refused before the key is looked at leaves the key unknown.
        if entry["outcome"] != "VALIDATION_ERROR":
            assert entry["keyId"] is not None, orjson.dumps(entry).decode()
        assert entry["address"] == "127.0.0.1", entry
    # Never a body's value: only the names of its fields.
    text = orjson.dumps(logged).decode()
    for value in (SECRET, "escalate", "new-one"):
        assert value not in text
    create = next(e for e in logged if e["route"] == "/api/keys" and e["method"] == "POST")
    assert create["fields"] == ["name", "role"]
    assert (create["outcome"], create["status"]) == ("ok", 201)


async def test_a_change_and_its_entry_commit_together(api: Api) -> None:
    created = await api.create_session("audited", autoStart=False)
    (entry,) = await entries(api, action="create_session")
    assert entry["sessionId"] == created["id"]
    assert entry["route"] == "/api/sessions"
    assert (entry["outcome"], entry["status"]) == ("ok", 201)
    assert entry["fields"] == ["autoStart", "name"]
    assert entry["keyId"] is not None

    # Named by its name in the path, the session is still found by its id.
    assert_ok(await api.request("PATCH", "/api/sessions/audited", json={"config": {}}))
    (patched,) = await entries(api, action="update_session")
    assert patched["sessionId"] == created["id"]
    assert patched["target"] == {"id": "audited"}
    assert patched["fields"] == ["config"]


async def test_a_burst_of_refused_calls_keeps_every_entry_in_shared_transactions(
    api: Api,
) -> None:
    """Entries written alone are group-committed: 40 concurrent refusals cost fewer
    commits than calls, and each call is answered once its own entry is durable."""
    await api.create_session("taken", autoStart=False)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    target = api.services.db_engine.sync_engine
    event.listen(target, "commit", committed)

    async def refused() -> str:
        response = await api.request("POST", "/api/sessions", json={"name": "taken"})
        assert_error(response, 409, "SESSION_EXISTS")
        return response.headers["x-request-id"]

    try:
        request_ids = await asyncio.gather(*(refused() for _ in range(40)))
    finally:
        event.remove(target, "commit", committed)
    written = {e["requestId"] for e in await entries(api, action="create_session")}
    assert set(request_ids) <= written
    assert len(commits) < len(request_ids), len(commits)


async def test_a_refused_change_is_rolled_back_and_its_entry_kept(api: Api) -> None:
    await api.create_session("taken", autoStart=False)
    response = await api.request("POST", "/api/sessions", json={"name": "taken"})
    assert_error(response, 409, "SESSION_EXISTS")
    refused, created = await entries(api, action="create_session")
    assert (refused["outcome"], refused["status"]) == ("SESSION_EXISTS", 409)
    assert refused["requestId"] == response.headers["x-request-id"]
    assert created["outcome"] == "ok"
    sessions, _ = assert_page(await api.request("GET", "/api/sessions"))
    assert [s["name"] for s in sessions] == ["taken"]


async def test_sends_and_engine_operations_are_audited(api: Api) -> None:
    a, b = await ready_pair(api)
    data_of(await post_text(api, a["id"], plus(b), "hello"), 202)
    (sent,) = await entries(api, action="send_text")
    assert (sent["outcome"], sent["status"], sent["sessionId"]) == ("ok", 202, a["id"])
    assert sent["fields"] == ["chatId", "text"]
    assert "hello" not in orjson.dumps(sent).decode()

    assert_ok(await api.request("POST", f"/api/sessions/{a['id']}/stop"))
    (stopped,) = await entries(api, action="stop_session")
    assert (stopped["outcome"], stopped["sessionId"]) == ("ok", a["id"])
    # A send the stopped session refuses: audited with its error, nothing queued.
    response = await post_text(api, a["id"], plus(b), "refused")
    assert_error(response, 409, "SESSION_NOT_READY")
    refused, _ = await entries(api, action="send_text")
    assert (refused["outcome"], refused["status"]) == ("SESSION_NOT_READY", 409)


async def test_filters_and_pagination(api: Api) -> None:
    one = await api.create_session("one", autoStart=False)
    await api.create_session("two", autoStart=False)
    operator = await api.new_key("operator")
    before = datetime.now(UTC)
    for name in ("one", "two"):
        response = await api.request(
            "PATCH", f"/api/sessions/{name}", key=operator, json={"config": {}}
        )
        assert_ok(response)
    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    operator_id = next(k["id"] for k in keys if k["role"] == "operator")

    by_key = await entries(api, keyId=operator_id)
    assert [e["action"] for e in by_key] == ["update_session", "update_session", FIRST_USE]
    by_session = await entries(api, sessionId=one["id"])
    assert [e["action"] for e in by_session] == ["update_session", "create_session"]
    since = await entries(api, since=before.isoformat(), action="update_session")
    assert [e["target"]["id"] for e in since] == ["two", "one"]

    everything = await entries(api)
    first, pagination = assert_page(await api.request("GET", "/api/audit?limit=2&page=1"))
    second, _ = assert_page(await api.request("GET", "/api/audit?limit=2&page=2"))
    assert pagination == {
        "page": 1,
        "limit": 2,
        "total": len(everything),
        "totalPages": (len(everything) + 1) // 2,
    }
    assert [e["id"] for e in first + second] == [e["id"] for e in everything[:4]]
    bad_ones = ("limit=0", "limit=101", "page=0", "since=2026-01-01T00:00:00", "since=x")
    for bad in (*bad_ones, "since=1700000000", "since=0.5"):
        assert_error(await api.request("GET", f"/api/audit?{bad}"), 400, "VALIDATION_ERROR")


async def test_only_admins_read_the_log(api: Api) -> None:
    for role in ("viewer", "operator"):
        key = await api.new_key(role)
        assert_error(await api.request("GET", "/api/audit", key=key), 403, "FORBIDDEN")
    scoped = await api.new_key("admin", sessions=[])
    assert_error(await api.request("GET", "/api/audit", key=scoped), 403, "FORBIDDEN")
    response = await api.request("GET", "/api/audit", key=None)
    assert_error(response, 401, "UNAUTHORIZED")
    # A refused write is audited with the key that tried.
    viewer = await api.new_key("viewer")
    response = await api.request("POST", "/api/sessions", key=viewer, json={"name": "nope"})
    assert_error(response, 403, "FORBIDDEN")
    (refused,) = await entries(api, action="create_session")
    assert refused["outcome"] == "FORBIDDEN"
    assert refused["keyId"] is not None


async def test_old_entries_are_pruned(api: Api) -> None:
    await api.create_session("recent", autoStart=False)
    old = datetime.now(UTC) - timedelta(days=api.settings.audit_retention_days, hours=1)
    async with unit_of_work(api.services.db) as db:
        db.add(
            AuditRow(
                at=old,
                key_id=None,
                address="192.0.2.1",
                action="delete_session",
                method="DELETE",
                route="/api/sessions/{id}",
                session_id=None,
                target={"id": "gone"},
                fields=None,
                outcome="ok",
                status=200,
                request_id="req_old",
            )
        )
    assert "req_old" in {e["requestId"] for e in await entries(api)}
    await api.services.maintenance.run_once()
    remaining = await entries(api)
    assert "req_old" not in {e["requestId"] for e in remaining}
    assert "create_session" in {e["action"] for e in remaining}


async def test_pairs_first_seen_before_the_retention_are_pruned(api: Api) -> None:
    """Every (key, address) pair ever seen was kept for as long as its key lived: with
    clients on changing addresses, a table that only grew."""
    admin_id = await _admin_id(api)
    old = datetime.now(UTC) - timedelta(days=api.settings.audit_retention_days, hours=1)
    async with unit_of_work(api.services.db) as db:
        db.add(KeyAddressRow(key_id=admin_id, address="192.0.2.1", first_seen_at=old))
        db.add(KeyAddressRow(key_id=admin_id, address="192.0.2.2", first_seen_at=utcnow()))
    await api.services.maintenance.run_once()
    async with api.services.db() as db:
        kept = (await db.execute(select(KeyAddressRow.address))).scalars().all()
    assert "192.0.2.1" not in kept
    assert "192.0.2.2" in kept


async def test_first_use_from_a_new_address_is_recorded_once(api: Api) -> None:
    viewer = await api.new_key("viewer")
    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    viewer_id = next(k["id"] for k in keys if k["role"] == "viewer")
    headers = {"X-API-Key": viewer}
    async with client_from(api, "198.51.100.7") as far, client_from(api, "203.0.113.9") as other:
        for _ in range(3):
            assert_page(await far.get("/api/sessions", headers=headers))
        assert_page(await other.get("/api/sessions", headers=headers))
        # A refused write from a third address: the first use commits with its entry.
        async with client_from(api, "192.0.2.50") as third:
            response = await third.post("/api/sessions", headers=headers, json={"name": "x"})
            assert_error(response, 403, "FORBIDDEN")
    uses = await entries(api, keyId=viewer_id, action=FIRST_USE)
    assert sorted(e["address"] for e in uses) == ["192.0.2.50", "198.51.100.7", "203.0.113.9"]
    assert {e["route"] for e in uses} == {"/api/sessions"}
    assert {e["status"] for e in uses} == {None}
    # Newest first: the third address's first use is older than the call that made it.
    third_entries = [e for e in await entries(api, keyId=viewer_id) if e["address"] == "192.0.2.50"]
    assert [e["action"] for e in third_entries] == ["create_session", FIRST_USE]

    # Another instance (its own memory) seeing the same pair writes nothing more.
    elsewhere = AuditService(api.services.db, SeenPairs())
    await elsewhere.note_key_use(viewer_id, "198.51.100.7", "GET", "/api/sessions", "req_x")
    assert len(await entries(api, keyId=viewer_id, action=FIRST_USE)) == 3


async def test_a_known_pair_costs_no_query(api: Api) -> None:
    admin_id = await _admin_id(api)  # the admin key from here is known from now on
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = api.services.db_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await api.services.audit.note_key_use(
            admin_id, "127.0.0.1", "GET", "/api/sessions", "req_y"
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []


async def _admin_id(api: Api) -> str:
    keys, _ = assert_page(await api.request("GET", "/api/keys", key=ADMIN_KEY))
    return str(next(k["id"] for k in keys if k["role"] == "admin"))


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_unmatched_routes_are_not_calls(api: Api, method: str) -> None:
    response = await api.request(method, "/api/no-such-thing")
    assert response.status_code in (404, 405)
    assert [e for e in await entries(api) if e["action"] != FIRST_USE] == []
