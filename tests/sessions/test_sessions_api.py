"""Sessions over HTTP: create, validate, list, get and configure.

Table-driven checks loop over their cases on one app (one database each), which keeps
the PostgreSQL runs fast; every assertion names the case that failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from openwa.db.models import SessionRow
from tests.fixtures.app import Api, AppFactory
from tests.sessions.support import SESSION_ID_RE, detail_fields, error_of, statuses

SESSION_FIELDS = {
    "id",
    "name",
    "engine",
    "status",
    "statusHistory",
    "phoneNumber",
    "pushName",
    "config",
    "createdAt",
    "updatedAt",
    "lastError",
}


async def total_sessions(api: Api) -> int:
    response = await api.request("GET", "/api/sessions")
    assert response.status_code == 200, response.text
    total: int = response.json()["pagination"]["total"]
    return total


def response_meta_differs(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Each response has its own request id, even when the data is a kept rendering."""
    return bool(first["meta"]["requestId"] != second["meta"]["requestId"])


# Create.


async def test_create_defaults_to_mock_and_auto_start(api: Api) -> None:
    response = await api.request("POST", "/api/sessions", json={"name": "alpha"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert set(body["meta"]) >= {"timestamp", "requestId"}
    session = body["data"]
    assert set(session) >= SESSION_FIELDS
    assert SESSION_ID_RE.fullmatch(session["id"]), session["id"]
    assert session["name"] == "alpha"
    assert session["engine"] == "mock"
    # autoStart defaults to true: the session is already on its way.
    assert session["status"] == "initializing"
    assert statuses(session) == ["created", "initializing"]
    assert session["config"] == {}
    assert session["phoneNumber"] is None
    assert session["lastError"] is None
    await api.wait_status(session["id"], "ready")


async def test_create_without_auto_start_stays_created(api: Api) -> None:
    session = await api.create_session("idle", autoStart=False)
    assert SESSION_ID_RE.fullmatch(session["id"]), session["id"]
    assert session["status"] == "created"
    assert statuses(session) == ["created"]
    first = session["statusHistory"][0]
    assert first["previousStatus"] is None
    assert first["at"]
    assert not api.services.runtime.is_running(session["id"])
    assert (await api.session("idle"))["status"] == "created"

    # engine "mock" given explicitly, or null for the default, is the same.
    for name, engine in (("explicit", "mock"), ("nulled", None)):
        other = await api.create_session(name, engine=engine, autoStart=False)
        assert other["engine"] == "mock"
        assert other["id"] != session["id"]

    # Every valid name is kept as given and finds its session.
    for name in ["a", "A1", "9lives", "sales_team-2", "x" * 64, "session", "Ses-not-reserved"]:
        created = await api.create_session(name, autoStart=False)
        assert created["name"] == name
        assert (await api.session(name))["id"] == created["id"]

    # A given config is kept as given.
    config = {
        "proxy": "socks5://proxy.example:1080",
        "metadata": {"team": "sales", "region": "eu"},
        "ignore": {"groups": True, "status": False, "channels": True},
        "markOnline": False,
    }
    configured = await api.create_session("configured", autoStart=False, config=config)
    assert configured["config"] == config
    assert (await api.session("configured"))["config"] == config
    twenty = {f"k{i}": f"v{i}" for i in range(20)}
    full = await api.create_session("twenty", autoStart=False, config={"metadata": twenty})
    assert full["config"]["metadata"] == twenty
    assert api.services.runtime.running_count == 0


async def test_create_duplicate_name_is_session_exists(api: Api) -> None:
    first = await api.create_session("dup", autoStart=False)
    for auto_start in (False, True):
        response = await api.request(
            "POST", "/api/sessions", json={"name": "dup", "autoStart": auto_start}
        )
        error_of(response, 409, "SESSION_EXISTS", auto_start)
    listed = await api.request("GET", "/api/sessions")
    assert [s["id"] for s in listed.json()["data"]] == [first["id"]]
    assert (await api.session("dup"))["status"] == "created"

    # Once deleted, the name is free again.
    assert (await api.request("DELETE", "/api/sessions/dup")).status_code == 200
    second = await api.create_session("dup", autoStart=False)
    assert second["id"] != first["id"]

    # Concurrent creates with one name: one wins, the others are told why (no 500).
    responses = await asyncio.gather(
        *(
            api.request("POST", "/api/sessions", json={"name": "race", "autoStart": False})
            for _ in range(3)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            error_of(response, 409, "SESSION_EXISTS")
    assert await total_sessions(api) == 2


async def test_create_rejects_bad_names_and_bodies(api: Api) -> None:
    bad_names: list[Any] = [
        "",
        "-leading-dash",
        "_leading-underscore",
        "has space",
        "dot.ted",
        "slash/name",
        "ümlaut",
        "x" * 65,
        "ses_mine",
        "SES_mine",
        "ses_01JD8X0000000000000000000A",
        42,
        None,
    ]
    for name in bad_names:
        response = await api.request("POST", "/api/sessions", json={"name": name})
        error = error_of(response, 400, "VALIDATION_ERROR", name)
        assert detail_fields(error) == ["body.name"], (name, error)

    error = error_of(await api.request("POST", "/api/sessions", json={}), 400, "VALIDATION_ERROR")
    assert detail_fields(error) == ["body.name"]

    for raw in (b"not json", b"[1, 2]", b'"name"', b"", b'{"name": "x",}', b"\xff\xfe"):
        response = await api.request(
            "POST", "/api/sessions", content=raw, headers={"Content-Type": "application/json"}
        )
        error_of(response, 400, "VALIDATION_ERROR", raw)

    # One answer lists every bad field.
    body = {
        "name": "bad name",
        "engine": "telegram",
        "unknown": 1,
        "config": {
            "proxy": "ftp://proxy.example:21",
            "metadata": {"n": 1, "ok": "fine"},
            "surprise": True,
        },
    }
    error = error_of(await api.request("POST", "/api/sessions", json=body), 400, "VALIDATION_ERROR")
    fields = detail_fields(error)
    for field in (
        "body.name",
        "body.engine",
        "body.unknown",
        "body.config.proxy",
        "body.config.surprise",
    ):
        assert field in fields, fields
    assert any(f.startswith("body.config.metadata") for f in fields), fields
    for item in error["details"]:
        assert set(item) >= {"field", "message", "type"}
        assert item["message"]

    assert await total_sessions(api) == 0


async def test_create_rejects_bad_config_and_engines(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"proxy": "ftp://proxy.example:21"}, "body.config.proxy"),
        ({"proxy": "not a url"}, "body.config.proxy"),
        ({"proxy": "http://"}, "body.config.proxy"),
        ({"proxy": "http://proxy.example:notaport"}, "body.config.proxy"),
        ({"proxy": "http://proxy.example:70000"}, "body.config.proxy"),
        ({"proxy": 42}, "body.config.proxy"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "body.config.metadata"),
        ({"metadata": {"count": 3}}, "body.config.metadata"),
        ({"metadata": {"flag": True}}, "body.config.metadata"),
        ({"metadata": {"none": None}}, "body.config.metadata"),
        ({"metadata": {"nested": {"a": "b"}}}, "body.config.metadata"),
        ({"metadata": ["a", "b"]}, "body.config.metadata"),
        ({"metadata": {"": "empty key"}}, "body.config.metadata"),
        ({"ignore": {"groups": "sometimes"}}, "body.config.ignore"),
        ({"ignore": {"stories": True}}, "body.config.ignore"),
        ({"markOnline": "often"}, "body.config.markOnline"),
        ({"colour": "blue"}, "body.config.colour"),
    ]
    for config, field in cases:
        response = await api.request(
            "POST", "/api/sessions", json={"name": "cfg", "config": config}
        )
        error = error_of(response, 400, "VALIDATION_ERROR", config)
        fields = detail_fields(error)
        assert fields, (config, error)
        assert all(f.startswith(field) for f in fields), (config, fields)

    # Every engine the contract names is accepted (whatsapp-web.js under both names).
    for engine, stored in (
        ("baileys", "baileys"),
        ("webjs", "webjs"),
        ("whatsapp-web.js", "webjs"),
    ):
        response = await api.request(
            "POST", "/api/sessions", json={"name": "real", "engine": engine, "autoStart": False}
        )
        assert response.status_code == 201, response.text
        created = response.json()["data"]
        assert created["engine"] == stored
        assert (await api.request("DELETE", f"/api/sessions/{created['id']}")).status_code == 200
    # Names that are no engine at all: 400.
    not_engines: list[Any] = ["telegram", "Mock", "", 1, ["mock"]]
    for bad in not_engines:
        response = await api.request("POST", "/api/sessions", json={"name": "real", "engine": bad})
        error = error_of(response, 400, "VALIDATION_ERROR", bad)
        assert detail_fields(error) == ["body.engine"], (bad, error)

    assert await total_sessions(api) == 0


async def test_proxy_credentials_are_masked_everywhere(api: Api) -> None:
    proxy = "http://alice:s3cr3t-pw@proxy.example:3128"
    masked = "http://***:***@proxy.example:3128"
    created = await api.create_session("masked", autoStart=False, config={"proxy": proxy})
    assert created["config"]["proxy"] == masked
    one = await api.request("GET", "/api/sessions/masked")
    listed = await api.request("GET", "/api/sessions")
    patched = await api.request(
        "PATCH", "/api/sessions/masked", json={"config": {"metadata": {"a": "b"}}}
    )
    for response in (one, listed, patched):
        assert response.status_code == 200, response.text
        assert "s3cr3t-pw" not in response.text
    assert one.json()["data"]["config"]["proxy"] == masked
    assert listed.json()["data"][0]["config"]["proxy"] == masked
    assert patched.json()["data"]["config"]["proxy"] == masked
    # The real credentials are kept for the engine.
    async with api.services.db() as db:
        row = await db.get(SessionRow, created["id"])
        assert row is not None
        assert row.config["proxy"] == proxy

    cases = [
        ("https://bob:pw@secure.example", "https://***:***@secure.example"),
        ("socks5://carol:pw@10.0.0.1:1080", "socks5://***:***@10.0.0.1:1080"),
        ("http://proxy.example:8080", "http://proxy.example:8080"),
        # A token as the user name, and a password as a query parameter, are credentials.
        ("http://T0KEN-as-user@proxy.example:3128", "http://***@proxy.example:3128"),
        ("http://proxy.example:3128/?password=pw", "http://proxy.example:3128/?password=***"),
        # A bare token in the query, and a path that is one, have no name to keep.
        ("http://proxy.example:3128/?T0KEN-bare", "http://proxy.example:3128/?***"),
        ("http://proxy.example:3128/T0KEN-path", "http://proxy.example:3128/***"),
    ]
    for i, (given, shown) in enumerate(cases):
        session = await api.create_session(f"px{i}", autoStart=False, config={"proxy": given})
        assert session["config"]["proxy"] == shown, given


async def test_proxy_masking_of_an_ipv6_host(api: Api) -> None:
    created = await api.create_session(
        "px6", autoStart=False, config={"proxy": "http://dave:pw@[2001:db8::1]:3128"}
    )
    # The brackets must stay, or the masked URL is no longer a URL.
    assert created["config"]["proxy"] == "http://***:***@[2001:db8::1]:3128"


async def test_no_role_sees_proxy_credentials(api: Api) -> None:
    """The contract shows proxy credentials to nobody once set: admin, operator and
    viewer keys all read the masked URL (the probe found a token as user name shown)."""
    proxy = "http://T0KEN-as-user@proxy.example:3128/?token=t0k3n&password=pa55"
    created = await api.create_session("px-roles", autoStart=False, config={"proxy": proxy})
    masked = "http://***@proxy.example:3128/?token=***&password=***"
    assert created["config"]["proxy"] == masked
    for role in ("admin", "operator", "viewer"):
        key = await api.new_key(role)
        for path in ("/api/sessions/px-roles", "/api/sessions"):
            response = await api.request("GET", path, key=key)
            assert response.status_code == 200, response.text
            for secret in ("T0KEN-as-user", "t0k3n", "pa55"):
                assert secret not in response.text, (role, path)


async def test_concurrent_creates_respect_the_session_limit(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(max_sessions=1)
    try:
        responses = await asyncio.gather(
            *(api.request("POST", "/api/sessions", json={"name": f"c{i}"}) for i in range(3))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 409, 409], [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                error_of(response, 409, "SESSION_LIMIT_REACHED")
        assert api.services.runtime.running_count == 1
        assert await total_sessions(api) == 1
    finally:
        await AppFactory.stop(api, manager)


# List and get.


async def test_list_is_paginated(api: Api) -> None:
    empty = (await api.request("GET", "/api/sessions")).json()
    assert empty["data"] == []
    assert empty["pagination"] == {"page": 1, "limit": 20, "total": 0, "totalPages": 0}

    names = [f"s{i}" for i in range(5)]
    for name in names:
        await api.create_session(name, autoStart=False)

    response = await api.request("GET", "/api/sessions")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert set(body["meta"]) >= {"timestamp", "requestId"}
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 5, "totalPages": 1}
    assert [s["name"] for s in body["data"]] == names  # oldest first
    assert all(set(s) >= SESSION_FIELDS for s in body["data"])

    seen: list[str] = []
    for page, size in ((1, 2), (2, 2), (3, 1)):
        response = await api.request("GET", "/api/sessions", params={"page": page, "limit": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["pagination"] == {"page": page, "limit": 2, "total": 5, "totalPages": 3}
        assert len(body["data"]) == size
        seen += [s["name"] for s in body["data"]]
    assert seen == names

    beyond = (await api.request("GET", "/api/sessions", params={"page": 4, "limit": 2})).json()
    assert beyond["data"] == []
    assert beyond["pagination"] == {"page": 4, "limit": 2, "total": 5, "totalPages": 3}

    for limit in (1, 100):
        whole = (await api.request("GET", "/api/sessions", params={"limit": limit})).json()
        assert whole["pagination"]["totalPages"] == (5 if limit == 1 else 1)
        assert len(whole["data"]) == min(limit, 5)

    # Out of range is an error, not clamped.
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"limit": 0}, ["query.limit"]),
        ({"limit": 101}, ["query.limit"]),
        ({"limit": -1}, ["query.limit"]),
        ({"limit": "ten"}, ["query.limit"]),
        ({"page": 0}, ["query.page"]),
        ({"page": -3}, ["query.page"]),
        ({"page": "first"}, ["query.page"]),
        ({"page": 1.5}, ["query.page"]),
        ({"page": 0, "limit": 101}, ["query.page", "query.limit"]),
    ]
    for params, fields in cases:
        response = await api.request("GET", "/api/sessions", params=params)
        error = error_of(response, 400, "VALIDATION_ERROR", params)
        assert sorted(detail_fields(error)) == sorted(fields), (params, error)


async def test_get_by_id_or_name(api: Api) -> None:
    created = await api.create_session("lookup", autoStart=False)
    by_id = await api.request("GET", f"/api/sessions/{created['id']}")
    by_name = await api.request("GET", "/api/sessions/lookup")
    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json()["data"] == by_name.json()["data"]
    data = by_id.json()["data"]
    assert set(data) >= SESSION_FIELDS
    assert data["id"] == created["id"]
    assert data["name"] == "lookup"

    # The GET's JSON is rendered once per committed row: it is the list's rendering of
    # the same row, and a change (a rename, a status move) is seen at once.
    listed = (await api.request("GET", "/api/sessions")).json()["data"]
    assert [item for item in listed if item["id"] == created["id"]] == [data]
    changed = await api.request(
        "PATCH", "/api/sessions/lookup", json={"config": {"metadata": {"team": "b"}}}
    )
    assert changed.status_code == 200, changed.text
    assert (await api.session(created["id"]))["config"]["metadata"] == {"team": "b"}
    await api.request("POST", f"/api/sessions/{created['id']}/start")
    for _ in range(200):
        if (await api.session(created["id"]))["status"] == "ready":
            break
        await asyncio.sleep(0.02)
    after = await api.session(created["id"])
    assert after["status"] == "ready"
    assert after["statusHistory"] != data["statusHistory"]
    assert response_meta_differs(by_id.json(), (await api.request("GET", by_id.url)).json())

    # Unknown sessions are 404 on every route, by name or by id.
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "", {}),
        ("DELETE", "", {}),
        ("PATCH", "", {"json": {"config": {}}}),
        ("GET", "/qr", {}),
        ("POST", "/start", {}),
        ("POST", "/stop", {}),
        ("POST", "/restart", {}),
        ("POST", "/logout", {}),
        ("POST", "/pairing-code", {"json": {"phoneNumber": "+15550100123"}}),
        ("POST", "/mock/scan", {}),
        ("POST", "/mock/disconnect", {}),
    ]
    for ref in ("nobody", "ses_01JD8X0000000000000000000A"):
        for method, path, kwargs in routes:
            response = await api.request(method, f"/api/sessions/{ref}{path}", **kwargs)
            error = error_of(response, 404, "SESSION_NOT_FOUND", (ref, method, path))
            assert error["message"]

    # What can be neither an id nor a name is a 400.
    refs = [
        "-dash",
        "dot.ted",
        "ses_notanid",
        "SES_01JD8X0000000000000000000A",
        "ses_01JD8X0000000000000000000a",
        "x" * 65,
        "sp%20ace",
        "%C3%BC",
    ]
    for ref in refs:
        response = await api.request("GET", f"/api/sessions/{ref}")
        error = error_of(response, 400, "VALIDATION_ERROR", ref)
        assert detail_fields(error) == ["path.id"], (ref, error)
        response = await api.request("POST", f"/api/sessions/{ref}/start")
        error_of(response, 400, "VALIDATION_ERROR", ref)


# Configure.


async def test_patch_merges_config(api: Api) -> None:
    created = await api.create_session(
        "merge",
        autoStart=False,
        config={
            "proxy": "http://proxy.example:3128",
            "metadata": {"team": "sales", "tier": "gold"},
            "markOnline": True,
        },
    )
    response = await api.request(
        "PATCH", "/api/sessions/merge", json={"config": {"metadata": {"team": "support"}}}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    # A given field replaces the stored one as a whole; the others stay.
    assert data["config"] == {
        "proxy": "http://proxy.example:3128",
        "metadata": {"team": "support"},
        "markOnline": True,
    }
    assert data["reconnectRequired"] is False
    assert set(data) >= SESSION_FIELDS

    # By id too; null removes a field.
    response = await api.request(
        "PATCH",
        f"/api/sessions/{created['id']}",
        json={"config": {"proxy": None, "ignore": {"groups": True}}},
    )
    assert response.status_code == 200, response.text
    config = response.json()["data"]["config"]
    assert "proxy" not in config
    assert config["metadata"] == {"team": "support"}
    assert config["markOnline"] is True
    assert config["ignore"]["groups"] is True

    # An empty change changes nothing.
    response = await api.request("PATCH", "/api/sessions/merge", json={"config": {}})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["config"] == config

    # The change is stored.
    stored = await api.session("merge")
    assert stored["config"] == config
    assert stored["updatedAt"] >= stored["createdAt"]

    # Bad bodies change nothing.
    cases: list[tuple[Any, str]] = [
        ({}, "body.config"),
        ({"config": None}, "body.config"),
        ({"config": {"proxy": "gopher://x.example"}}, "body.config.proxy"),
        ({"config": {"metadata": {"n": 1}}}, "body.config.metadata"),
        ({"config": {"metadata": {f"k{i}": "v" for i in range(21)}}}, "body.config.metadata"),
        ({"config": {"nope": 1}}, "body.config.nope"),
        ({"config": {}, "name": "rename"}, "body.name"),
        ([], "body"),
    ]
    for body, field in cases:
        response = await api.request("PATCH", "/api/sessions/merge", json=body)
        error = error_of(response, 400, "VALIDATION_ERROR", body)
        assert all(f.startswith(field) for f in detail_fields(error)), (body, error)
    assert (await api.session("merge"))["config"] == config

    # null on every field leaves an empty config.
    response = await api.request(
        "PATCH",
        "/api/sessions/merge",
        json={"config": {"proxy": None, "metadata": None, "markOnline": None, "ignore": None}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["config"] == {}
    assert (await api.session("merge"))["config"] == {}


async def test_patch_proxy_on_running_session_requires_reconnect(api: Api) -> None:
    await api.create_session("running")
    await api.wait_status("running", "ready")

    async def patch(config: dict[str, Any]) -> dict[str, Any]:
        response = await api.request("PATCH", "/api/sessions/running", json={"config": config})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    assert (await patch({"proxy": "http://u:pw@proxy.example:3128"}))["reconnectRequired"] is True
    # The same proxy again is no change.
    assert (await patch({"proxy": "http://u:pw@proxy.example:3128"}))["reconnectRequired"] is False
    assert (await patch({"metadata": {"a": "b"}}))["reconnectRequired"] is False
    # Shown online on connecting: a change applies on the next connection.
    assert (await patch({"markOnline": True}))["reconnectRequired"] is True
    # Removing the proxy needs a reconnect too.
    data = await patch({"proxy": None})
    assert data["reconnectRequired"] is True
    assert "proxy" not in data["config"]
    # The patch itself does not touch the connection.
    assert (await api.session("running"))["status"] == "ready"

    # Not running: the next start reads the new proxy anyway.
    await api.create_session("resting", autoStart=False)
    response = await api.request(
        "PATCH", "/api/sessions/resting", json={"config": {"proxy": "http://proxy.example:3128"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["reconnectRequired"] is False
    assert (await api.request("POST", "/api/sessions/running/stop")).status_code == 200
    stopped = await patch({"proxy": "http://other.example:3128"})
    assert stopped["reconnectRequired"] is False
