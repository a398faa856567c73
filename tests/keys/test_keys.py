"""API keys: created once, listed without secrets, deleted at once, scoped, stored hashed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from openwa.cache.memory import MemoryCache
from openwa.db.unit_of_work import unit_of_work
from openwa.errors import Unauthorized
from openwa.keys.principal import Role
from openwa.keys.schemas import ApiKeyCreate
from openwa.keys.service import KeyService
from tests.api.checks import assert_error, assert_ok, assert_page, problem
from tests.fixtures.app import ADMIN_KEY, Api, AppFactory

KEY_ID_RE = re.compile(r"^key_[0-9A-HJKMNP-TV-Z]{26}$")
PUBLIC_FIELDS = {
    "id",
    "name",
    "role",
    "prefix",
    "sessions",
    "source",
    "createdAt",
    "expiresAt",
    "allowedCidrs",
}


async def create_key(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.request("POST", "/api/keys", json=body)
    data: dict[str, Any] = assert_ok(response, 201)
    return data


async def all_keys(api: Api, key: str = ADMIN_KEY) -> list[dict[str, Any]]:
    items, pagination = assert_page(await api.request("GET", "/api/keys?limit=100", key=key))
    assert pagination["total"] == len(items)
    return items


async def stored_key_rows(api: Api) -> list[dict[str, Any]]:
    """Every column of every api_keys row, read straight from the database."""
    async with api.services.db() as db:
        result = await db.execute(text("SELECT * FROM api_keys"))
        return [dict(row) for row in result.mappings()]


def assert_not_in_clear(rows: list[dict[str, Any]], secret: str) -> None:
    """Neither the key nor any 16-character piece of it is in any column."""
    pieces = {secret[i : i + 16] for i in range(max(1, len(secret) - 15))}
    for row in rows:
        for column, value in row.items():
            rendered = str(value)
            assert secret not in rendered, f"key in clear in api_keys.{column}"
            for piece in pieces:
                assert piece not in rendered, f"part of a key in api_keys.{column}"


# --- create, list, delete ---------------------------------------------------------


async def test_create_returns_the_key_once(api: Api) -> None:
    created = await create_key(api, name="crm", role="operator")
    assert set(created) == {*PUBLIC_FIELDS, "key"}
    assert KEY_ID_RE.fullmatch(created["id"]), created
    assert created["name"] == "crm"
    assert created["role"] == "operator"
    assert created["sessions"] is None
    assert created["source"] == "api"
    key = created["key"]
    assert isinstance(key, str)
    assert len(key) >= 32
    assert key.startswith(created["prefix"])
    assert len(created["prefix"]) < len(key) // 2

    listed = await all_keys(api)
    mine = [item for item in listed if item["id"] == created["id"]]
    assert len(mine) == 1
    assert set(mine[0]) == PUBLIC_FIELDS
    assert mine[0]["prefix"] == created["prefix"]
    response = await api.request("GET", "/api/keys")
    assert key not in response.text
    assert ADMIN_KEY not in response.text
    assert "hash" not in response.text.lower()

    # The new key works at once.
    assert_ok(await api.request("GET", "/api/sessions", key=key))


async def test_every_key_is_different(api: Api) -> None:
    keys = {(await create_key(api, name=f"k{i}", role="viewer"))["key"] for i in range(5)}
    assert len(keys) == 5


async def test_list_is_paginated(api: Api) -> None:
    for i in range(4):
        await create_key(api, name=f"key {i}", role="viewer")
    # 4 created + the API_KEY admin key.
    first, pagination = assert_page(await api.request("GET", "/api/keys?page=1&limit=2"))
    assert pagination == {"page": 1, "limit": 2, "total": 5, "totalPages": 3}
    assert len(first) == 2
    second, _ = assert_page(await api.request("GET", "/api/keys?page=2&limit=2"))
    third, _ = assert_page(await api.request("GET", "/api/keys?page=3&limit=2"))
    beyond, pagination = assert_page(await api.request("GET", "/api/keys?page=4&limit=2"))
    assert len(second) == 2
    assert len(third) == 1
    assert beyond == []
    assert pagination["total"] == 5
    ids = [item["id"] for item in first + second + third]
    assert len(set(ids)) == 5
    _, default = assert_page(await api.request("GET", "/api/keys"))
    assert default["limit"] == 20
    assert default["page"] == 1


async def test_list_refuses_bad_paging(api: Api) -> None:
    problems = {}
    for query in ("limit=0", "limit=101", "page=0", "limit=-1", "page=abc"):
        response = await api.request("GET", f"/api/keys?{query}")
        if found := problem(assert_error, response, 400, "VALIDATION_ERROR"):
            problems[query] = found
    assert not problems, problems


async def test_deleted_key_is_refused_at_once(api: Api) -> None:
    created = await create_key(api, name="short-lived", role="operator")
    key = created["key"]
    # Used once first, so any lookup cache holds it.
    assert_ok(await api.request("GET", "/api/sessions", key=key))
    assert_ok(await api.request("GET", "/api/sessions", key=key))

    deleted = assert_ok(await api.request("DELETE", f"/api/keys/{created['id']}"))
    assert deleted == {"id": created["id"], "deleted": True}

    assert_error(await api.request("GET", "/api/sessions", key=key), 401, "UNAUTHORIZED")
    response = await api.request(
        "GET", "/api/sessions", key=None, headers={"Authorization": f"Bearer {key}"}
    )
    assert_error(response, 401, "UNAUTHORIZED")
    assert created["id"] not in {item["id"] for item in await all_keys(api)}
    # Deleting again: the key is gone.
    assert_error(await api.request("DELETE", f"/api/keys/{created['id']}"), 404, "NOT_FOUND")


async def test_delete_unknown_key_is_404(api: Api) -> None:
    response = await api.request("DELETE", "/api/keys/key_01JD8X0000000000000000000A")
    assert_error(response, 404, "NOT_FOUND")
    assert_error(await api.request("DELETE", "/api/keys/nope"), 404, "NOT_FOUND")
    assert_error(await api.request("DELETE", "/api/keys/" + "k" * 200), 400, "VALIDATION_ERROR")


INVALID_BODIES: list[Any] = [
    {},
    {"name": "x"},
    {"role": "admin"},
    {"name": "", "role": "admin"},
    {"name": "x" * 101, "role": "admin"},
    {"name": "x", "role": "root"},
    {"name": "x", "role": "ADMIN"},
    {"name": "x", "role": None},
    {"name": 5, "role": "viewer"},
    {"name": "x", "role": "viewer", "sessions": "alpha"},
    {"name": "x", "role": "viewer", "sessions": [1]},
    {"name": "x", "role": "viewer", "unknownField": True},
    [{"name": "x", "role": "viewer"}],
    "x",
]


def validation_error_with_details(response: httpx.Response) -> None:
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"], error


async def test_create_validates_the_body(api: Api) -> None:
    before = await all_keys(api)
    problems = {}
    for body in INVALID_BODIES:
        response = await api.request("POST", "/api/keys", json=body)
        if found := problem(validation_error_with_details, response):
            problems[repr(body)] = found
    assert not problems, problems
    assert await all_keys(api) == before


# --- roles ------------------------------------------------------------------------


async def test_admin_key_may_manage_keys(api: Api) -> None:
    admin = await api.new_key("admin")
    created = assert_ok(
        await api.request("POST", "/api/keys", key=admin, json={"name": "x", "role": "viewer"}),
        201,
    )
    assert_page(await api.request("GET", "/api/keys", key=admin))
    assert_ok(await api.request("DELETE", f"/api/keys/{created['id']}", key=admin))
    assert_ok(await api.request("POST", "/api/sessions", key=admin, json={"name": "by-admin"}), 201)


@pytest.mark.parametrize("role", ["operator", "viewer"])
async def test_non_admin_keys_may_not_touch_keys(api: Api, role: str) -> None:
    key = await api.new_key(role)
    victim = await create_key(api, name="victim", role="viewer")
    before = await all_keys(api)

    for method, url, body in [
        ("GET", "/api/keys", None),
        ("GET", "/api/keys?page=1&limit=5", None),
        ("POST", "/api/keys", {"name": "escalate", "role": "admin"}),
        ("POST", "/api/keys", {"name": "same", "role": role}),
        ("DELETE", f"/api/keys/{victim['id']}", None),
        ("DELETE", "/api/keys/key_01JD8X0000000000000000000A", None),
    ]:
        response = await api.request(method, url, key=key, json=body)
        assert_error(response, 403, "FORBIDDEN")
        assert victim["key"] not in response.text

    assert await all_keys(api) == before
    # The victim key still works.
    assert_ok(await api.request("GET", "/api/sessions", key=victim["key"]))


async def test_operator_and_viewer_keys_on_sessions(api: Api) -> None:
    operator = await api.new_key("operator")
    viewer = await api.new_key("viewer")
    assert_ok(await api.request("POST", "/api/sessions", key=operator, json={"name": "op"}), 201)
    assert_ok(await api.request("GET", "/api/sessions/op", key=viewer))
    response = await api.request("POST", "/api/sessions", key=viewer, json={"name": "vi"})
    assert_error(response, 403, "FORBIDDEN")


# --- session scoping ------------------------------------------------------------------


async def test_sessions_by_id_or_name(api: Api) -> None:
    alpha = await api.create_session("alpha", autoStart=False)
    beta = await api.create_session("beta", autoStart=False)
    await api.create_session("gamma", autoStart=False)

    by_name = await create_key(api, name="n", role="operator", sessions=["alpha"])
    assert by_name["sessions"] == [alpha["id"]]
    by_id = await create_key(api, name="i", role="viewer", sessions=[beta["id"]])
    assert by_id["sessions"] == [beta["id"]]
    both = await create_key(
        api, name="b", role="viewer", sessions=["beta", alpha["id"], "alpha", beta["id"]]
    )
    assert sorted(both["sessions"]) == sorted([alpha["id"], beta["id"]])
    empty = await create_key(api, name="e", role="viewer", sessions=[])
    assert empty["sessions"] == []

    listed = {item["id"]: item for item in await all_keys(api)}
    assert listed[by_name["id"]]["sessions"] == [alpha["id"]]

    for key, names in [
        (by_name["key"], ["alpha"]),
        (by_id["key"], ["beta"]),
        (both["key"], ["alpha", "beta"]),
        (empty["key"], []),
    ]:
        items, pagination = assert_page(await api.request("GET", "/api/sessions", key=key))
        assert sorted(item["name"] for item in items) == names
        assert pagination["total"] == len(names)

    assert_ok(await api.request("GET", "/api/sessions/alpha", key=by_name["key"]))
    assert_ok(await api.request("GET", f"/api/sessions/{alpha['id']}", key=by_name["key"]))
    assert_error(await api.request("GET", "/api/sessions/beta", key=by_name["key"]), 403)
    assert_error(await api.request("GET", "/api/sessions/alpha", key=empty["key"]), 403)


UNKNOWN_SCOPES = [
    ["nosuch"],
    ["alpha", "nosuch"],
    ["ses_01JD8X0000000000000000000A"],
    [""],
    ["not a name"],
    ["x" * 300],
]


async def test_unknown_session_in_scope_is_refused(api: Api) -> None:
    await api.create_session("alpha", autoStart=False)
    before = await all_keys(api)
    problems = {}
    for sessions in UNKNOWN_SCOPES:
        body = {"name": "scoped", "role": "viewer", "sessions": sessions}
        response = await api.request("POST", "/api/keys", json=body)
        if found := problem(validation_error_with_details, response):
            problems[repr(sessions)[:40]] = found
    assert not problems, problems
    assert await all_keys(api) == before


# --- storage ------------------------------------------------------------------------


async def test_no_key_is_stored_in_clear(api: Api) -> None:
    await api.create_session("alpha", autoStart=False)
    secrets = [ADMIN_KEY]
    for role in ("admin", "operator", "viewer"):
        secrets.append((await create_key(api, name=f"{role} key", role=role))["key"])
    secrets.append((await create_key(api, name="scoped", role="viewer", sessions=["alpha"]))["key"])
    for secret in secrets:
        # Used, so that anything a key lookup stores is stored by now.
        assert_ok(await api.request("GET", "/api/sessions", key=secret))

    rows = await stored_key_rows(api)
    assert len(rows) == len(secrets)
    for secret in secrets:
        assert_not_in_clear(rows, secret)


# --- the API_KEY bootstrap ------------------------------------------------------------


async def test_api_key_from_settings_is_an_admin_key(api: Api) -> None:
    items = await all_keys(api)
    env_keys = [item for item in items if item["source"] == "env"]
    assert len(env_keys) == 1
    assert env_keys[0]["role"] == "admin"
    assert env_keys[0]["sessions"] is None
    created = await create_key(api, name="by env key", role="operator")
    assert_ok(await api.request("DELETE", f"/api/keys/{created['id']}"))


async def test_new_api_key_replaces_the_old_one(app_factory: AppFactory) -> None:
    new_admin = "replacement-admin-key-9876543210"
    first, manager = await app_factory.start()
    try:
        operator = await first.new_key("operator")
    finally:
        await AppFactory.stop(first, manager)

    second, manager = await app_factory.start(api_key=new_admin)
    try:
        assert_error(await second.request("GET", "/api/keys"), 401, "UNAUTHORIZED")
        items = await all_keys(second, key=new_admin)
        env_keys = [item for item in items if item["source"] == "env"]
        assert len(env_keys) == 1
        assert env_keys[0]["role"] == "admin"
        # Keys made through the API are kept.
        assert_ok(await second.request("GET", "/api/sessions", key=operator))
        assert_not_in_clear(await stored_key_rows(second), new_admin)
    finally:
        await AppFactory.stop(second, manager)

    # The same API_KEY again: nothing changes, no second env key.
    third, manager = await app_factory.start(api_key=new_admin)
    try:
        items = await all_keys(third, key=new_admin)
        assert len([item for item in items if item["source"] == "env"]) == 1
        assert_error(await third.request("GET", "/api/keys"), 401, "UNAUTHORIZED")
    finally:
        await AppFactory.stop(third, manager)


async def test_generated_admin_key_is_printed_once(
    app_factory: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    first, manager = await app_factory.start(api_key=None)
    try:
        printed = capsys.readouterr().out
        found = re.findall(r"owa_[A-Za-z0-9_-]{20,}", printed)
        assert len(found) == 1, printed
        generated = found[0]
        items = await all_keys(first, key=generated)
        assert [(item["source"], item["role"]) for item in items] == [("generated", "admin")]
        assert_error(await first.request("GET", "/api/keys"), 401, "UNAUTHORIZED")
        assert_not_in_clear(await stored_key_rows(first), generated)
    finally:
        await AppFactory.stop(first, manager)

    second, manager = await app_factory.start(api_key=None)
    try:
        assert "owa_" not in capsys.readouterr().out
        assert len(await all_keys(second, key=generated)) == 1
    finally:
        await AppFactory.stop(second, manager)


class _HeldWrites(MemoryCache):
    """A cache whose first write of a key's entry waits until released: a lookup that
    read the key's row and is about to cache it."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self._held = False

    async def _maybe_hold(self, value: bytes) -> None:
        if value.startswith(b"{") and not self._held:
            self._held = True
            self.holding.set()
            await self.release.wait()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._maybe_hold(value)
        await super().set(key, value, ttl_s)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        await self._maybe_hold(value)
        return await super().add(key, value, ttl_s)


async def test_a_lookup_that_read_a_key_before_its_delete_does_not_cache_it_after(
    api: Api,
) -> None:
    """The lookup read the row before the delete committed and wrote its cache entry
    after the delete's eviction: the deleted key worked for the cache's whole TTL (an
    audit made a new admin key with a deleted one, 29 s after the delete)."""
    keys = KeyService(_HeldWrites(), read=api.services.db_read)
    async with unit_of_work(api.services.db) as db:
        created = await keys.create(db, ApiKeyCreate(name="doomed", role=Role.ADMIN))
    lookup = asyncio.create_task(keys.authenticate(created.key, None))
    cache = keys._cache
    assert isinstance(cache, _HeldWrites)
    await asyncio.wait_for(cache.holding.wait(), 10)  # read, not yet cached
    async with unit_of_work(api.services.db) as db:
        await keys.delete(db, created.id)  # committed, then evicted
    cache.release.set()
    assert (await lookup).key_id == created.id  # it began before the delete
    with pytest.raises(Unauthorized):
        await keys.authenticate(created.key, None)


async def test_a_key_name_reads_as_it_is(api: Api) -> None:
    """Shown in the dashboard and the audit log: a name with a C1 control, a mark that
    turns the text around, or nothing but spaces was taken."""
    for name in ("a\x85b", "\u202eadmin\u200b", "x\u2066y", "   ", "a\x1fb"):
        response = await api.request("POST", "/api/keys", json={"name": name, "role": "viewer"})
        assert_error(response, 400, "VALIDATION_ERROR")
    await create_key(api, name="CRM Jakarta ✓ Überweisung", role="viewer")
