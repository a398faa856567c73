"""Key limits (issue 11, keys): `expiresAt` (401 once past), `allowedCidrs` (403 from
elsewhere), `PATCH /api/keys/{id}`, `GET /api/keys/self`, the last lasting admin key
kept, and the stored prefix that shows at most four characters of a secret."""

from __future__ import annotations

import asyncio
import importlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from openwa.db import migrate
from openwa.db.base import UTCDateTime
from openwa.db.engine import create_engine
from openwa.keys.networks import address_allowed, parse_networks
from openwa.keys.secrets import display_prefix, generate_key
from openwa.keys.service import KeyService
from tests.api.checks import assert_error, assert_ok, problem
from tests.events.sseclient import SseStream
from tests.events.support import create_ready_session, inbound
from tests.events.test_streams import ServerFactory, _ends
from tests.events.test_websocket import _refused
from tests.events.wsclient import close_code, collect, open_ws
from tests.fixtures.app import ADMIN_KEY, Api, wait_for
from tests.fixtures.locks import postgres_only, waiting


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _create(api: Api, **body: Any) -> dict[str, Any]:
    data: dict[str, Any] = assert_ok(await api.request("POST", "/api/keys", json=body), 201)
    return data


async def _patch(api: Api, key_id: str, key: str = ADMIN_KEY, **body: Any) -> Any:
    return await api.request("PATCH", f"/api/keys/{key_id}", key=key, json=body)


async def _env_admin_id(api: Api) -> str:
    data = assert_ok(await api.request("GET", "/api/keys/self"))
    assert data["source"] == "env", data
    key_id: str = data["id"]
    return key_id


# --- expiry -----------------------------------------------------------------------


async def test_an_expired_key_is_401_saying_expired(api: Api) -> None:
    created = await _create(
        api, name="short", role="viewer", expiresAt=_at(3)
    )  # room for a loaded machine
    expires = datetime.fromisoformat(created["expiresAt"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    # Used before it expires: the lookup is cached, so the check runs on the cached key.
    assert_ok(await api.request("GET", "/api/sessions", key=created["key"]))
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    for url in ("/api/sessions", "/api/keys/self", "/api/events/stream"):
        error = assert_error(await api.request("GET", url, key=created["key"]), 401, "UNAUTHORIZED")
        assert "expired" in error["message"], error
    # Still listed, with its expiry, so an admin can see why and extend it.
    listed = assert_ok(await api.request("GET", "/api/keys?limit=100"))
    assert created["id"] in {item["id"] for item in listed}
    extended = assert_ok(await _patch(api, created["id"], expiresAt=_at(3600)))
    assert extended["expiresAt"] is not None
    assert_ok(await api.request("GET", "/api/sessions", key=created["key"]))


# --- client networks --------------------------------------------------------------


async def test_a_key_is_refused_outside_its_networks(api: Api) -> None:
    # The in-process transport reports the client as 127.0.0.1, like a local socket.
    elsewhere = await _create(api, name="office", role="viewer", allowedCidrs=["10.0.0.0/8"])
    local = await _create(
        api, name="local", role="viewer", allowedCidrs=["10.0.0.0/8", "127.0.0.0/8"]
    )
    v6only = await _create(api, name="v6", role="viewer", allowedCidrs=["::/0"])
    for key in (elsewhere["key"], v6only["key"]):
        for url in ("/api/sessions", "/api/keys/self", "/api/events/stream"):
            assert_error(await api.request("GET", url, key=key), 403, "FORBIDDEN")
    assert_ok(await api.request("GET", "/api/sessions", key=local["key"]))
    assert_ok(await api.request("GET", "/api/keys/self", key=local["key"]))
    # Lifted by PATCH, at once (the cached lookup is evicted).
    assert_ok(await _patch(api, elsewhere["id"], allowedCidrs=None))
    assert_ok(await api.request("GET", "/api/sessions", key=elsewhere["key"]))
    # And set again.
    assert_ok(await _patch(api, elsewhere["id"], allowedCidrs=["192.168.0.0/16"]))
    assert_error(await api.request("GET", "/api/sessions", key=elsewhere["key"]), 403)


def test_addresses_are_matched_as_ipv4_or_ipv6() -> None:
    networks = parse_networks(("10.0.0.0/8", "2001:db8::/32"))
    assert address_allowed("10.1.2.3", networks)
    assert address_allowed("::ffff:10.1.2.3", networks)  # IPv4 on a dual-stack socket
    assert address_allowed("2001:db8::5", networks)
    assert address_allowed("fe80::1%eth0", parse_networks(("fe80::/10",)))
    for outside in ("11.0.0.1", "2001:db9::1", "::1", "testclient", "", None):
        assert not address_allowed(outside, networks), outside


async def test_networks_are_normalised_and_listed(api: Api) -> None:
    created = await _create(
        api,
        name="nets",
        role="operator",
        allowedCidrs=["10.1.2.3/8", "2001:DB8::1/32", "192.168.1.7"],
        expiresAt="2099-01-01T12:00:00+02:00",
    )
    assert created["allowedCidrs"] == ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7/32"]
    assert created["expiresAt"].startswith("2099-01-01T10:00:00"), created
    listed = {item["id"]: item for item in assert_ok(await api.request("GET", "/api/keys"))}
    assert listed[created["id"]]["allowedCidrs"] == created["allowedCidrs"]
    assert listed[created["id"]]["expiresAt"] == created["expiresAt"]
    plain = listed[await _env_admin_id(api)]
    assert (plain["expiresAt"], plain["allowedCidrs"]) == (None, None)


INVALID_LIMITS: list[dict[str, Any]] = [
    {"expiresAt": "2000-01-01T00:00:00Z"},
    {"expiresAt": "2099-01-01T00:00:00"},  # no offset
    {"expiresAt": "soon"},
    {"expiresAt": 5},
    {"allowedCidrs": []},
    {"allowedCidrs": "10.0.0.0/8"},
    {"allowedCidrs": ["nope"]},
    {"allowedCidrs": ["10.0.0.0/33"]},
    {"allowedCidrs": ["2001:db8::/129"]},
    {"allowedCidrs": [1]},
    {"allowedCidrs": ["1" * 100]},
    {"allowedCidrs": [f"10.0.{i}.0/24" for i in range(33)]},
]


async def test_limits_are_validated_on_create_and_patch(api: Api) -> None:
    target = await _create(api, name="target", role="viewer")
    before = assert_ok(await api.request("GET", "/api/keys?limit=100"))
    problems = {}
    for limits in [*INVALID_LIMITS, {"name": None}, {"role": None}, {"role": "root"}]:
        for method, url, body in (
            ("POST", "/api/keys", {"name": "x", "role": "viewer", **limits}),
            ("PATCH", f"/api/keys/{target['id']}", limits),
        ):
            if method == "POST" and set(limits) & {"name", "role"}:
                continue
            response = await api.request(method, url, json=body)
            error = problem(assert_error, response, 400, "VALIDATION_ERROR")
            if error:
                problems[f"{method} {str(limits)[:60]}"] = error
            elif not response.json()["error"]["details"]:
                problems[f"{method} {str(limits)[:60]}"] = "no details"
    assert not problems, problems
    assert assert_ok(await api.request("GET", "/api/keys?limit=100")) == before
    # At the bound, fine.
    many = [f"10.0.{i}.0/24" for i in range(32)]
    assert_ok(await _patch(api, target["id"], allowedCidrs=many))


# --- PATCH ------------------------------------------------------------------------


async def test_patch_changes_each_field_at_once(api: Api) -> None:
    alpha = await api.create_session("alpha", autoStart=False)
    await api.create_session("beta", autoStart=False)
    created = await _create(api, name="crm", role="operator")
    key = created["key"]
    # Cached before each change: the change must evict it.
    assert_ok(await api.request("GET", "/api/sessions", key=key))

    renamed = assert_ok(await _patch(api, created["id"], name="crm-2"))
    assert renamed["name"] == "crm-2"
    assert renamed["role"] == "operator"
    assert assert_ok(await api.request("GET", "/api/keys/self", key=key))["name"] == "crm-2"

    assert_ok(await _patch(api, created["id"], role="viewer"))
    response = await api.request("POST", "/api/sessions", key=key, json={"name": "gamma"})
    assert_error(response, 403, "FORBIDDEN")

    scoped = assert_ok(await _patch(api, created["id"], sessions=["alpha"]))
    assert scoped["sessions"] == [alpha["id"]]
    listed = assert_ok(await api.request("GET", "/api/sessions", key=key))
    assert [item["name"] for item in listed] == ["alpha"]
    assert_error(await api.request("GET", "/api/sessions/beta", key=key), 403, "FORBIDDEN")
    unscoped = assert_ok(await _patch(api, created["id"], sessions=None))
    assert unscoped["sessions"] is None
    assert_ok(await api.request("GET", "/api/sessions/beta", key=key))

    expiring = assert_ok(await _patch(api, created["id"], expiresAt=_at(3600)))
    assert expiring["expiresAt"] is not None
    assert assert_ok(await api.request("GET", "/api/keys/self", key=key))["expiresAt"]
    never = assert_ok(await _patch(api, created["id"], expiresAt=None))
    assert never["expiresAt"] is None

    netted = assert_ok(await _patch(api, created["id"], allowedCidrs=["10.0.0.0/8"]))
    assert netted["allowedCidrs"] == ["10.0.0.0/8"]
    assert_error(await api.request("GET", "/api/sessions", key=key), 403, "FORBIDDEN")
    assert_ok(await _patch(api, created["id"], allowedCidrs=["127.0.0.1/32"]))
    assert_ok(await api.request("GET", "/api/sessions", key=key))

    # Fields left out stay; an empty body changes nothing.
    unchanged = assert_ok(await _patch(api, created["id"]))
    assert unchanged["name"] == "crm-2"
    assert unchanged["role"] == "viewer"
    assert unchanged["allowedCidrs"] == ["127.0.0.1/32"]
    listed_keys = assert_ok(await api.request("GET", "/api/keys?limit=100"))
    assert [item for item in listed_keys if item["id"] == created["id"]] == [unchanged]

    # An unknown session in the scope, an unknown key, a bad id.
    response = await _patch(api, created["id"], sessions=["nosuch"])
    assert_error(response, 400, "VALIDATION_ERROR")
    assert_error(await _patch(api, "key_01JD8X0000000000000000000A", name="x"), 404, "NOT_FOUND")
    assert_error(await _patch(api, "k" * 200, name="x"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("role", ["operator", "viewer", "scoped admin"])
async def test_only_unscoped_admin_keys_may_patch(api: Api, role: str) -> None:
    await api.create_session("alpha", autoStart=False)
    if role == "scoped admin":
        key = await api.new_key("admin", sessions=["alpha"])
    else:
        key = await api.new_key(role)
    victim = await _create(api, name="victim", role="viewer")
    own_id = assert_ok(await api.request("GET", "/api/keys/self", key=key))["id"]
    for target, body in (
        (victim["id"], {"role": "admin"}),
        (own_id, {"role": "admin"}),
        (own_id, {"sessions": None}),
        (own_id, {"expiresAt": None}),
        ("key_01JD8X0000000000000000000A", {"name": "x"}),
    ):
        assert_error(await _patch(api, target, key=key, **body), 403, "FORBIDDEN")
    assert assert_ok(await api.request("GET", "/api/keys/self", key=victim["key"]))["role"] == (
        "viewer"
    )


# --- GET /api/keys/self -------------------------------------------------------------


async def test_every_key_reads_itself(api: Api) -> None:
    alpha = await api.create_session("alpha", autoStart=False)
    expires = _at(3600)
    for role, extra in (
        ("admin", {}),
        ("operator", {"sessions": ["alpha"]}),
        ("viewer", {"expiresAt": expires, "allowedCidrs": ["127.0.0.0/8"]}),
    ):
        created = await _create(api, name=f"{role} self", role=role, **extra)
        own = assert_ok(await api.request("GET", "/api/keys/self", key=created["key"]))
        assert {k: v for k, v in created.items() if k != "key"} == own
        assert own["role"] == role
        assert created["key"] not in str(own)
        if role == "operator":
            assert own["sessions"] == [alpha["id"]]
        if role == "viewer":
            assert own["expiresAt"] is not None
            assert own["allowedCidrs"] == ["127.0.0.0/8"]
    env = assert_ok(await api.request("GET", "/api/keys/self"))
    assert (env["role"], env["source"], env["sessions"]) == ("admin", "env", None)
    assert_error(await api.request("GET", "/api/keys/self", key=None), 401, "UNAUTHORIZED")
    assert_error(await api.request("GET", "/api/keys/self", key="owa_nope"), 401, "UNAUTHORIZED")


# --- the last admin key -------------------------------------------------------------


async def test_the_last_lasting_admin_key_cannot_be_taken_away(api: Api) -> None:
    await api.create_session("alpha", autoStart=False)
    env_id = await _env_admin_id(api)
    # Other admin keys exist, but none is on every session and never expiring.
    await _create(api, name="scoped admin", role="admin", sessions=["alpha"])
    await _create(api, name="expiring admin", role="admin", expiresAt=_at(3600))
    for body, field in (
        ({"role": "operator"}, "body.role"),
        ({"role": "viewer", "name": "demoted"}, "body.role"),
        ({"sessions": ["alpha"]}, "body.sessions"),
        ({"expiresAt": _at(3600)}, "body.expiresAt"),
    ):
        error = assert_error(await _patch(api, env_id, **body), 400, "VALIDATION_ERROR")
        assert "last admin key" in error["message"], error
        assert [d["field"] for d in error["details"]] == [field], error
    error = assert_error(await api.request("DELETE", f"/api/keys/{env_id}"), 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "path.key_id"
    # Changes that keep it an unscoped, unexpiring admin are fine.
    assert_ok(await _patch(api, env_id, name="main admin", allowedCidrs=["127.0.0.0/8"]))
    own = assert_ok(await api.request("GET", "/api/keys/self"))
    assert (own["name"], own["role"]) == ("main admin", "admin")

    # With a second lasting admin key, the first may go; then the second is the last.
    second = await _create(api, name="second admin", role="admin")
    assert_ok(await _patch(api, env_id, role="viewer"))
    assert_error(await _patch(api, second["id"], key=second["key"], role="viewer"), 400)
    assert_error(await api.request("DELETE", f"/api/keys/{second['id']}", key=second["key"]), 400)
    assert_ok(await api.request("GET", "/api/keys", key=second["key"]))
    # The demoted key is a viewer now.
    assert_error(await api.request("GET", "/api/keys"), 403, "FORBIDDEN")


async def test_two_admins_demoted_at_once_leave_one(api: Api) -> None:
    env_id = await _env_admin_id(api)
    second = await _create(api, name="second admin", role="admin")
    results = await asyncio.gather(
        _patch(api, env_id, role="viewer"),
        _patch(api, second["id"], key=second["key"], role="viewer"),
    )
    assert sorted(r.status_code for r in results) == [200, 400], [r.text for r in results]
    admins = [
        item
        for key in (ADMIN_KEY, second["key"])
        if (response := await api.request("GET", "/api/keys/self", key=key)).status_code == 200
        and (item := response.json()["data"])["role"] == "admin"
    ]
    assert len(admins) == 1, admins


async def test_a_key_deleted_while_it_is_changed_is_changed_then_deleted(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change read the key, the delete committed, and the change then updated no row:
    503 "try again", which could only find the key gone (PostgreSQL). A change or delete
    of a key now locks the admin keys, then the key, before it reads: the delete waits
    at the first lock the change holds, then goes through."""
    postgres_only(database_url)
    key = await _create(api, name="changing", role="operator")
    read, proceed = asyncio.Event(), asyncio.Event()
    scope = KeyService._scope

    async def pausing(*args: Any) -> Any:
        read.set()
        await proceed.wait()
        return await scope(*args)

    monkeypatch.setattr(KeyService, "_scope", staticmethod(pausing))
    changing = asyncio.ensure_future(_patch(api, key["id"], name="renamed", sessions=None))
    await asyncio.wait_for(read.wait(), 30)
    deleting = asyncio.ensure_future(api.request("DELETE", f"/api/keys/{key['id']}"))
    locks = waiting(api)

    async def delete_done_or_waiting() -> bool:
        return deleting.done() or await locks() > 0

    try:
        await wait_for(delete_done_or_waiting, bool, 30, "the delete to end or wait")
    finally:
        proceed.set()
    assert_ok(await changing)
    assert_ok(await deleting)
    assert_error(await _patch(api, key["id"], name="after"), 404)


# --- the stored prefix --------------------------------------------------------------


def test_the_prefix_shows_at_most_four_characters_of_the_secret() -> None:
    generated = generate_key()
    assert display_prefix(generated) == generated[:8]
    assert display_prefix("0123456789abcdef") == "0123"  # a 16-character API_KEY
    assert display_prefix("owa_0123456789ab") == "owa_012"  # an API_KEY may start so
    assert display_prefix("owa_0123456789abcdef") == "owa_0123"
    assert display_prefix("abcdefgh") == "ab"
    assert display_prefix("abc") == ""
    assert display_prefix("owa_abc") == "owa_"
    for key in ("0123456789abcdef", "abcdefgh", "x" * 100, generated, ADMIN_KEY):
        shown = display_prefix(key)
        secret = len(shown.removeprefix("owa_"))
        assert secret <= min(4, len(key.removeprefix("owa_")) // 4), (key, shown)


def test_the_migration_shortens_stored_prefixes() -> None:
    migration = importlib.import_module("openwa.db.migrations.versions.0007_key_limits")
    shortened = migration._shortened
    # Keys the server made: 43 secret characters.
    assert shortened("owa_abcdefgh", "api") == "owa_abcd"
    assert shortened("owa_abcdefgh", "generated") == "owa_abcd"
    assert shortened("owa_abcd", "api") == "owa_abcd"
    # An API_KEY of unknown length: a quarter of the 12 characters stored, or of the
    # whole key when it was shorter (and stored whole).
    assert shortened("test-admin-k", "env") == "tes"
    assert shortened("owa_abcdefgh", "env") == "owa_ab"
    assert shortened("abcdefgh", "env") == "ab"


async def test_upgrading_shortens_the_prefixes_stored_before(empty_database_url: str) -> None:
    migration = importlib.import_module("openwa.db.migrations.versions.0007_key_limits")
    keys = sa.table(
        "api_keys",
        *(sa.column(name, sa.String) for name in ("id", "name", "role", "key_hash")),
        *(sa.column(name, sa.String) for name in ("prefix", "source")),
        sa.column("created_at", UTCDateTime()),
    )
    stored = {"key_a": ("owa_abcdefgh", "api"), "key_e": ("test-admin-k", "env")}
    engine = create_engine(empty_database_url)
    try:
        await migrate.upgrade(engine, migration.down_revision)
        async with engine.begin() as conn:
            for key_id, (prefix, source) in stored.items():
                row = {"name": key_id, "role": "admin", "key_hash": key_id, "prefix": prefix}
                await conn.execute(
                    keys.insert().values(
                        id=key_id, source=source, created_at=datetime.now(UTC), **row
                    )
                )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            result = await conn.execute(sa.select(keys.c.id, keys.c.prefix))
            assert {row.id: row.prefix for row in result} == {"key_a": "owa_abcd", "key_e": "tes"}
    finally:
        await engine.dispose()


async def test_listed_prefixes_are_short(api: Api) -> None:
    created = await _create(api, name="p", role="viewer")
    listed = {item["id"]: item for item in assert_ok(await api.request("GET", "/api/keys"))}
    assert listed[created["id"]]["prefix"] == created["key"][:8]
    assert listed[await _env_admin_id(api)]["prefix"] == ADMIN_KEY[:4]


# --- live streams ----------------------------------------------------------------


async def test_changing_a_key_ends_its_streams_and_new_ones_stay(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        viewer = assert_ok(client.post("/api/keys", json={"name": "w", "role": "viewer"}), 201)
        alpha = create_ready_session(client, "alpha")

    for change in ({"sessions": [alpha["id"]]}, {"role": "operator"}):
        async with open_ws(server, key=viewer["key"]) as ws:
            with SseStream(server.url, viewer["key"]) as sse:
                assert sse.response.status_code == 200
                with server.client() as client:
                    message_id = inbound(client, alpha["id"], f"before {change}")
                await collect(ws, lambda got, m=message_id: _has(got, m), 10, "the event")
                started = time.monotonic()
                with server.client() as client:
                    assert_ok(client.patch(f"/api/keys/{viewer['id']}", json=change))
                assert await close_code(ws) == 1008
                assert _ends(sse, 10), f"the SSE stream outlived {change}"
                assert time.monotonic() - started < 10

    # The changed key opens new streams that stay open and see events.
    async with open_ws(server, key=viewer["key"]) as ws:
        await asyncio.sleep(0.5)
        with server.client() as client:
            message_id = inbound(client, alpha["id"], "after the changes")
        await collect(ws, lambda got: _has(got, message_id), 10, "the event after the change")
        # A rename changes nothing the stream may see: it stays open.
        with server.client() as client:
            assert_ok(client.patch(f"/api/keys/{viewer['id']}", json={"name": "renamed"}))
            renamed = inbound(client, alpha["id"], "after a rename")
        await collect(ws, lambda got: _has(got, renamed), 10, "the event after a rename")


async def test_an_expiring_key_loses_its_streams(server_factory: ServerFactory) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        response = client.post(
            "/api/keys", json={"name": "brief", "role": "viewer", "expiresAt": _at(2.5)}
        )
        brief = assert_ok(response, 201)
    expires = datetime.fromisoformat(brief["expiresAt"].replace("Z", "+00:00"))

    async with open_ws(server, key=brief["key"]) as ws:
        with SseStream(server.url, brief["key"]) as sse:
            assert sse.response.status_code == 200
            assert await close_code(ws, timeout=10) == 1008
            assert _ends(sse, 5), "the SSE stream outlived its key's expiry"
    # Ended at the expiry, not long after (the close itself takes a moment).
    late = (datetime.now(UTC) - expires).total_seconds()
    assert -0.5 < late < 4, late
    with server.client(brief["key"]) as client:
        error = assert_error(client.get("/api/events/stream"), 401, "UNAUTHORIZED")
        assert "expired" in error["message"]
    await _refused(server, key=brief["key"])


def _has(events: list[dict[str, Any]], message_id: str) -> bool:
    return any(event["data"].get("id") == message_id for event in events)
