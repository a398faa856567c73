"""Instance-wide webhooks: /api/webhooks (admin only) and WEBHOOK_URL from the settings."""

from __future__ import annotations

from openwa.db.models import WebhookRow
from tests.fixtures.app import Api
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Received, Receiver
from tests.webhooks.support import (
    all_succeeded,
    data_of,
    error_of,
    inbound,
    message_ids,
    new_secret,
    ready_session,
    register,
    settled,
    verifies,
    wait_deliveries,
)


async def test_instance_webhooks_are_admin_only(hapi: Api, receiver: Receiver) -> None:
    hook = await register(hapi, None, receiver.url)
    assert hook["sessionId"] is None
    assert hook["source"] == "api"
    item = f"/api/webhooks/{hook['id']}"
    operator = await hapi.new_key("operator")
    viewer = await hapi.new_key("viewer")
    for key in (operator, viewer):
        for method, path, body in [
            ("GET", "/api/webhooks", None),
            ("POST", "/api/webhooks", {"url": receiver.url}),
            ("GET", item, None),
            ("PATCH", item, {"active": False}),
            ("GET", f"{item}/deliveries", None),
            ("POST", f"{item}/test", None),
            ("POST", f"{item}/rotate-secret", {}),
            ("DELETE", item, None),
        ]:
            response = await hapi.request(method, path, key=key, json=body)
            error_of(response, 403, "FORBIDDEN", (method, path))
    response = await hapi.request("GET", "/api/webhooks", key=None)
    error_of(response, 401, "UNAUTHORIZED")
    [listed] = data_of(await hapi.request("GET", "/api/webhooks"))
    assert listed["id"] == hook["id"]
    assert listed["active"] is True
    assert "secret" not in listed


async def test_operator_may_manage_a_session_webhook(hapi: Api, receiver: Receiver) -> None:
    session = await hapi.create_session("operated", engine="mock")
    operator = await hapi.new_key("operator")
    base = f"/api/sessions/{session['id']}/webhooks"
    created = await hapi.request("POST", base, key=operator, json={"url": receiver.url})
    hook = data_of(created, 201)
    assert hook["secret"].startswith("whsec_")
    viewer = await hapi.new_key("viewer")
    assert data_of(await hapi.request("GET", base, key=viewer))[0]["id"] == hook["id"]
    response = await hapi.request("POST", base, key=viewer, json={"url": receiver.url})
    error_of(response, 403, "FORBIDDEN")


async def test_instance_webhook_gets_events_of_every_session(hapi: Api, receiver: Receiver) -> None:
    before = await ready_session(hapi)
    hook = await register(hapi, None, receiver.url, events=["message.received"])
    after = await ready_session(hapi)

    first = await inbound(hapi, before["id"], "from the older session")
    second = await inbound(hapi, after["id"], "from the newer session")

    await receiver.wait_for(lambda rs: len(rs) == 2, what="both messages")
    by_session = {r.payload["sessionId"]: r for r in receiver.requests}
    assert set(by_session) == {before["id"], after["id"]}
    assert message_ids([by_session[before["id"]]]) == [first]
    assert message_ids([by_session[after["id"]]]) == [second]
    assert all(verifies(hook["secret"], r) for r in receiver.requests)
    await wait_deliveries(
        hapi,
        None,
        hook["id"],
        all_succeeded(2),
        what="two deliveries in the instance webhook's log",
    )


async def test_session_and_instance_webhooks_both_deliver(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    mine = await register(
        hapi, session["id"], f"{receiver.base}/session", events=["message.received"]
    )
    everyone = await register(hapi, None, f"{receiver.base}/instance", events=["message.received"])
    await inbound(hapi, session["id"], "twice")
    await receiver.wait_for(lambda rs: len(rs) == 2, what="both webhooks")
    [at_session] = receiver.of(path="/session")
    [at_instance] = receiver.of(path="/instance")
    assert at_session.payload["id"] == at_instance.payload["id"]
    assert verifies(mine["secret"], at_session)
    assert verifies(everyone["secret"], at_instance)
    assert not verifies(mine["secret"], at_instance)


async def test_webhook_url_setting_registers_one_instance_webhook(
    apps: Apps, receiver: Receiver
) -> None:
    secret = new_secret()
    env = {
        "webhook_url": receiver.url,
        "webhook_secret": secret,
        "webhook_events": "message.received",
    }
    api = await apps.start(**env)
    [hook] = data_of(await api.request("GET", "/api/webhooks"))
    assert hook["source"] == "env"
    assert hook["url"] == receiver.url
    assert hook["events"] == ["message.received"]
    assert hook["sessionId"] is None
    assert "secret" not in hook

    session = await ready_session(api)
    message_id = await inbound(api, session["id"], "via env")
    await receiver.wait_for(lambda rs: len(rs) >= 1, what="the delivery")
    await settled(api)
    assert {r.event for r in receiver.requests} == {"message.received"}
    assert message_ids(receiver.requests) == [message_id]
    assert verifies(secret, receiver.requests[0])

    # A restart with the same settings keeps that one webhook.
    await apps.stop(api)
    api = await apps.start(**env)
    [again] = data_of(await api.request("GET", "/api/webhooks"))
    assert again["id"] == hook["id"]
    assert again["source"] == "env"
    await api.wait_status(session["id"], "ready")
    second = await inbound(api, session["id"], "after restart")
    await receiver.wait_for(lambda rs: len(rs) >= 2, what="the delivery after restart")
    assert message_ids(receiver.requests) == [message_id, second]
    assert verifies(secret, receiver.requests[1])


async def test_env_webhook_without_secret_is_kept_whatever_the_events_order(
    apps: Apps, receiver: Receiver
) -> None:
    # WEBHOOK_EVENTS in an order of its own, with spaces: still the same settings.
    env = {"webhook_url": receiver.url, "webhook_events": "message.sent, message.received"}
    api = await apps.start(**env)
    [hook] = data_of(await api.request("GET", "/api/webhooks"))
    assert sorted(hook["events"]) == ["message.received", "message.sent"]
    for _ in range(2):
        await apps.stop(api)
        api = await apps.start(**env)
        [again] = data_of(await api.request("GET", "/api/webhooks"))
        assert again["id"] == hook["id"], "a restart replaced the env webhook (and its secret)"


async def test_changed_webhook_url_setting_changes_the_env_webhook_in_place(
    apps: Apps, receiver: Receiver
) -> None:
    """Its queue stays: replacing the webhook deleted the deliveries that waited for a
    receiver that was down (and, without WEBHOOK_SECRET, gave it a secret nobody knew)."""
    retrying = {"webhook_max_attempts": 1000}  # it waits, retrying, across the restart
    api = await apps.start(webhook_url=f"{receiver.base}/one", **retrying)
    [one] = data_of(await api.request("GET", "/api/webhooks"))
    api_made = await register(api, None, f"{receiver.base}/mine")
    await receiver.stop()
    session = await ready_session(api)
    waiting = await inbound(api, session["id"], "waiting for a receiver")
    await wait_deliveries(api, None, one["id"], lambda ds: ds and ds[0]["attempts"])
    secret = await _secret_of(api, one["id"])
    await apps.stop(api)

    await receiver.start()
    api = await apps.start(webhook_url=f"{receiver.base}/two", **retrying)
    hooks = data_of(await api.request("GET", "/api/webhooks"))
    env_hooks = [h for h in hooks if h["source"] == "env"]
    assert [(h["id"], h["url"]) for h in env_hooks] == [(one["id"], f"{receiver.base}/two")]
    assert api_made["id"] in {h["id"] for h in hooks}, "an API-made webhook was removed"

    def waited(rs: list[Received]) -> list[Received]:
        return [r for r in rs if r.path == "/two" and message_ids([r]) == [waiting]]

    await receiver.wait_for(lambda rs: bool(waited(rs)), what="the waiting delivery", timeout=30)
    sent = waited(receiver.requests)[0]
    assert verifies(secret, sent)  # the same secret as before


async def _secret_of(api: Api, webhook_id: str) -> str:
    async with api.services.db() as db:
        row = await db.get(WebhookRow, webhook_id)
        assert row is not None
        return row.secret
