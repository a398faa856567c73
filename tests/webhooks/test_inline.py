"""Webhooks given in a session's config, and config.ignore."""

from __future__ import annotations

from tests.fixtures.app import Api
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    data_of,
    error_of,
    hooks_path,
    inbound,
    message_ids,
    new_secret,
    ready_session,
    received_events,
    settled,
    verifies,
    wait_deliveries,
)

GROUP = "120363012345678901@g.us"


async def test_config_webhooks_are_returned_with_secrets_and_deliver(
    hapi: Api, receiver: Receiver
) -> None:
    given = new_secret()
    created = await ready_session(
        hapi,
        config={
            "webhooks": [
                {"url": f"{receiver.base}/generated", "events": ["message.received"]},
                {"url": f"{receiver.base}/given", "events": ["message.received"], "secret": given},
            ]
        },
    )
    hooks = {h["url"].rsplit("/", 1)[1]: h for h in created["webhooks"]}
    assert set(hooks) == {"generated", "given"}
    assert hooks["given"]["secret"] == given
    assert hooks["generated"]["secret"].startswith("whsec_")
    for hook in hooks.values():
        assert hook["source"] == "config"
        assert hook["sessionId"] == created["id"]
    # Stored as webhooks of the session, not in the config, and without secrets.
    assert "webhooks" not in created["config"]
    session = await hapi.session(created["id"])
    assert given not in str(session)
    listed = data_of(await hapi.request("GET", hooks_path(created["id"])))
    assert {h["id"] for h in listed} == {h["id"] for h in hooks.values()}
    assert all("secret" not in h for h in listed)

    message_id = await inbound(hapi, created["id"], "inline")
    await receiver.wait_for(lambda rs: len(rs) == 2, what="both inline webhooks")
    for name, hook in hooks.items():
        [request] = receiver.of(path=f"/{name}")
        assert message_ids([request]) == [message_id]
        assert verifies(hook["secret"], request)


async def test_config_sent_again_keeps_its_webhooks_and_their_queue(
    apps: Apps, receiver: Receiver
) -> None:
    """A client that sends the session's whole config again to change another field
    replaced every config webhook: their waiting deliveries were deleted, and one
    without a secret in the body got a new secret its receiver did not know."""
    api = await apps.start(webhook_max_attempts=1000)  # it waits, retrying, meanwhile
    hooks = [{"url": f"{receiver.base}/kept", "events": ["message.received"]}]
    created = await ready_session(api, config={"webhooks": hooks})
    [hook] = created["webhooks"]
    path = f"/api/sessions/{created['id']}"
    await receiver.stop()
    waiting = await inbound(api, created["id"], "while the receiver is down")
    await wait_deliveries(api, created["id"], hook["id"], lambda ds: ds and ds[0]["attempts"])

    again = data_of(
        await api.request("PATCH", path, json={"config": {"markOnline": True, "webhooks": hooks}})
    )
    # Kept, and its secret not shown again (it was shown when the webhook was made).
    assert [(h["id"], h["secret"]) for h in again["webhooks"]] == [(hook["id"], None)]
    await receiver.start()
    await receiver.wait_for(
        lambda rs: waiting in message_ids(rs), what="the delivery that waited", timeout=30
    )
    [request] = [r for r in receiver.requests if message_ids([r]) == [waiting]][:1]
    assert verifies(hook["secret"], request)

    # Listed with its secret, it is kept too, and shown with the secret the body gave.
    given = [{**hooks[0], "secret": hook["secret"]}]
    named = data_of(await api.request("PATCH", path, json={"config": {"webhooks": given}}))
    assert [(h["id"], h["secret"]) for h in named["webhooks"]] == [(hook["id"], hook["secret"])]

    # Changed, it is replaced (a new webhook, its queue gone with the old one).
    moved = [{"url": f"{receiver.base}/moved", "events": ["message.received"]}]
    replaced = data_of(await api.request("PATCH", path, json={"config": {"webhooks": moved}}))
    assert [h["id"] for h in replaced["webhooks"]] != [hook["id"]]
    listed = data_of(await api.request("GET", hooks_path(created["id"])))
    assert [h["url"] for h in listed] == [f"{receiver.base}/moved"]


async def test_config_webhook_with_a_bad_secret_or_url_is_refused(api: Api) -> None:
    bad_secret = await api.request(
        "POST",
        "/api/sessions",
        json={
            "name": "bad-inline-secret",
            "engine": "mock",
            "config": {"webhooks": [{"url": "http://93.184.215.14/x", "secret": "plain"}]},
        },
    )
    error_of(bad_secret, 400, "VALIDATION_ERROR")
    forbidden = await api.request(
        "POST",
        "/api/sessions",
        json={
            "name": "bad-inline-url",
            "engine": "mock",
            "config": {"webhooks": [{"url": "http://127.0.0.1:9/x"}]},
        },
    )
    error_of(forbidden, 400, "WEBHOOK_URL_FORBIDDEN")
    sessions = data_of(await api.request("GET", "/api/sessions"))
    assert [s["name"] for s in sessions] == []


async def test_ignored_groups_raise_no_event_and_no_delivery(hapi: Api, receiver: Receiver) -> None:
    created = await ready_session(
        hapi,
        config={"ignore": {"groups": True}, "webhooks": [{"url": receiver.url}]},
    )
    [hook] = created["webhooks"]
    await settled(hapi)  # the session's status events have arrived
    receiver.requests.clear()

    await inbound(hapi, created["id"], "in a group", sender=GROUP)
    normal = await inbound(hapi, created["id"], "from a person")

    await receiver.wait_for(
        lambda rs: any(r.event == "message.received" for r in rs), what="the normal message"
    )
    await settled(hapi)
    assert message_ids(receiver.requests) == [normal]
    assert all(r.payload["data"]["chatId"] != GROUP for r in receiver.requests)
    events = await received_events(hapi, created["id"], "message.received")
    assert [e["data"]["id"] for e in events] == [normal]
    assert verifies(hook["secret"], receiver.of("message.received")[0])


async def test_groups_arrive_when_not_ignored(hapi: Api, receiver: Receiver) -> None:
    created = await ready_session(
        hapi, config={"webhooks": [{"url": receiver.url, "events": ["message.received"]}]}
    )
    from_group = await inbound(hapi, created["id"], "in a group", sender=GROUP)
    await receiver.wait_for(lambda rs: len(rs) == 1, what="the group message")
    assert message_ids(receiver.requests) == [from_group]
    assert receiver.requests[0].payload["data"]["chatId"] == GROUP
