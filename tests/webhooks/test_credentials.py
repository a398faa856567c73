"""Who sees a webhook's credentials: receiver header values are masked for viewer keys,
and the secret is shown on create and rotate only, to nobody afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from openwa.kit.redact import origin_only
from tests.fixtures.app import Api
from tests.webhooks.conftest import Apps
from tests.webhooks.support import (
    data_of,
    hooks_path,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)

PUBLIC_URL = "http://93.184.215.14/hook"
HEADERS = {"Authorization": "Bearer receiver-credential-0123", "X-Tenant": "acme-tenant"}


def shown(response: Any) -> list[dict[str, Any]]:
    data = data_of(response)
    return data if isinstance(data, list) else [data]


async def test_viewers_see_header_names_but_no_values(api: Api) -> None:
    session = await ready_session(api)
    hook = await register(api, session["id"], PUBLIC_URL, headers=HEADERS, active=False)
    base = hooks_path(session["id"])
    viewer = await api.new_key("viewer")
    scoped_viewer = await api.new_key("viewer", sessions=[session["id"]])
    for key in (viewer, scoped_viewer):
        for path in (base, f"{base}/{hook['id']}"):
            response = await api.request("GET", path, key=key)
            for item in shown(response):
                assert item["headers"] == {"Authorization": "***", "X-Tenant": "***"}
            for value in HEADERS.values():
                assert value not in response.text, path
    # Keys that may change the headers see them as they are.
    for role in ("admin", "operator"):
        key = await api.new_key(role)
        for path in (base, f"{base}/{hook['id']}"):
            for item in shown(await api.request("GET", path, key=key)):
                assert item["headers"] == HEADERS, role


async def test_viewers_see_only_where_a_webhook_points(api: Api) -> None:
    """Receivers keep credentials in URLs too: user info, a token in the query, a path
    that is itself the token (Slack, Discord). A viewer sees scheme, host and port."""
    session = await ready_session(api)
    url = "https://user:pw-0123@93.184.215.14:8443/services/T0/B0/path-token-0123?token=q-0123#f"
    hook = await register(api, session["id"], url, active=False)
    bare = await register(api, session["id"], "https://93.184.215.14", active=False)
    base = hooks_path(session["id"])
    for key in (
        await api.new_key("viewer"),
        await api.new_key("viewer", sessions=[session["id"]]),
    ):
        response = await api.request("GET", f"{base}/{hook['id']}", key=key)
        assert data_of(response)["url"] == "https://***:***@93.184.215.14:8443/***?***#***"
        for secret in ("pw-0123", "path-token-0123", "q-0123", "user"):
            assert secret not in response.text
        listed = {
            item["id"]: item["url"] for item in shown(await api.request("GET", base, key=key))
        }
        assert listed[bare["id"]] == "https://93.184.215.14"
    operator = await api.new_key("operator")
    response = await api.request("GET", f"{base}/{hook['id']}", key=operator)
    assert data_of(response)["url"] == url


async def test_the_secret_is_never_returned_after_create(api: Api) -> None:
    session = await ready_session(api)
    hook = await register(api, session["id"], PUBLIC_URL, headers=HEADERS, active=False)
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    instance = await register(api, None, PUBLIC_URL, active=False)
    viewer = await api.new_key("viewer")
    for owner, item in ((session["id"], hook), (None, instance)):
        base = hooks_path(owner)
        path = f"{base}/{item['id']}"
        responses = [
            await api.request("GET", base),
            await api.request("GET", path),
            await api.request("PATCH", path, json={"events": ["message.received"]}),
            await api.request("GET", f"{path}/deliveries"),
        ]
        if owner is not None:
            responses.append(await api.request("GET", base, key=viewer))
            responses.append(await api.request("GET", f"/api/sessions/{owner}"))
        for response in responses:
            assert response.status_code == 200, response.text
            assert item["secret"] not in response.text
            assert '"secret"' not in response.text


def test_a_location_that_does_not_parse_is_masked_whole() -> None:
    """A receiver's `Location` is stored as it came; one that is no URL must not fail a
    viewer's listing of the delivery log."""
    assert origin_only("http://[::1/abc?token=x") == "***"
    assert origin_only("https://h.example:8443/p/t?x#f") == "https://h.example:8443/***?***#***"
    assert origin_only("https://h.example") == "https://h.example"


async def test_viewers_read_no_url_in_a_delivery_error(apps: Apps) -> None:
    """A receiver whose answer aiohttp cannot read (a bad status line) made its error
    quote the whole URL, path token and all, in the delivery log every viewer reads."""

    async def garbled(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO WORLD\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        api = await apps.start(webhook_max_attempts=1)
        session = await ready_session(api)
        url = f"http://127.0.0.1:{port}/services/T0/B0/path-token-0123"
        hook = await register(api, session["id"], url, events=["message.received"])
        await inbound(api, session["id"], "garbled")
        await wait_deliveries(
            api, session["id"], hook["id"], lambda ds: ds and ds[0]["status"] == "failed"
        )
    finally:
        server.close()
    path = f"{hooks_path(session['id'])}/{hook['id']}/deliveries"
    for role in ("viewer", "admin"):
        response = await api.request("GET", path, key=await api.new_key(role))
        (delivery,) = data_of(response)
        assert delivery["lastError"].startswith("ClientResponseError: 400"), delivery
        assert "path-token-0123" not in response.text, role
