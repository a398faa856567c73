"""Managing a session's webhooks: filters, headers, pause and resume, delete, test."""

from __future__ import annotations

from tests.fixtures.app import Api
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    data_of,
    deliveries,
    error_of,
    hooks_path,
    idle,
    inbound,
    logged,
    message_ids,
    ready_session,
    register,
    settled,
    verifies,
    wait_deliveries,
)


async def test_all_events_by_default_and_a_filter_delivers_only_those(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    everything = await register(hapi, session["id"], f"{receiver.base}/all")
    assert everything["events"] == ["*"]
    only = await register(hapi, session["id"], f"{receiver.base}/only", events=["message.received"])
    assert only["events"] == ["message.received"]

    # A status change and a message: the filter passes only the message.
    await hapi.request("POST", f"/api/sessions/{session['id']}/mock/disconnect", json={})
    await hapi.wait_status(session["id"], "ready")
    message_id = await inbound(hapi, session["id"], "filtered")

    await receiver.wait_for(
        lambda rs: (
            any(r.path == "/only" for r in rs)
            and any(r.path == "/all" and r.event == "message.received" for r in rs)
        ),
        what="the message at both webhooks",
    )
    await settled(hapi)
    assert {r.event for r in receiver.of(path="/only")} == {"message.received"}
    assert message_ids(receiver.of(path="/only")) == [message_id]
    assert "session.status" in {r.event for r in receiver.of(path="/all")}
    assert all(
        d["event"] == "message.received" for d in await deliveries(hapi, session["id"], only["id"])
    )


async def test_unknown_event_names_are_refused(hapi: Api, receiver: Receiver) -> None:
    session = await hapi.create_session("unknown-events", engine="mock")
    for events in (["message.nope"], [], ["*", "nope"], "message.received"):
        response = await hapi.request(
            "POST", hooks_path(session["id"]), json={"url": receiver.url, "events": events}
        )
        error_of(response, 400, "VALIDATION_ERROR", events)


async def test_custom_headers_arrive(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    headers = {"X-Team": "sales", "Authorization": "Bearer receiver-token"}
    hook = await register(
        hapi, session["id"], receiver.url, events=["message.received"], headers=headers
    )
    assert hook["headers"] == headers

    await inbound(hapi, session["id"], "with headers")

    [request] = await receiver.wait_for(lambda rs: len(rs) == 1, what="the delivery")
    assert request.headers["x-team"] == "sales"
    assert request.headers["authorization"] == "Bearer receiver-token"
    assert request.headers["content-type"].startswith("application/json")
    assert verifies(hook["secret"], request)


async def test_reserved_headers_are_refused(hapi: Api, receiver: Receiver) -> None:
    session = await hapi.create_session("reserved-headers", engine="mock")
    base = hooks_path(session["id"])
    reserved = [
        "webhook-id",
        "Webhook-Id",
        "webhook-signature",
        "webhook-timestamp",
        "content-type",
        "Content-Type",
        "Content-Length",
        "Host",
    ]
    for name in reserved:
        response = await hapi.request(
            "POST", base, json={"url": receiver.url, "headers": {name: "x"}}
        )
        error_of(response, 400, "VALIDATION_ERROR", name)
    hook = await register(hapi, session["id"], receiver.url)
    for name in reserved:
        response = await hapi.request(
            "PATCH", f"{base}/{hook['id']}", json={"headers": {name: "x"}}
        )
        error_of(response, 400, "VALIDATION_ERROR", name)
    for bad in ({"X-Bad": "a\r\nInjected: yes"}, {"Bad Name": "x"}, {"": "x"}):
        response = await hapi.request("POST", base, json={"url": receiver.url, "headers": bad})
        error_of(response, 400, "VALIDATION_ERROR", bad)
    assert data_of(await hapi.request("GET", f"{base}/{hook['id']}"))["headers"] == {}


async def test_inactive_webhook_holds_its_deliveries_until_active_again(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    base = hooks_path(session["id"])
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    item = f"{base}/{hook['id']}"
    receiver.answer(500)

    pending_id = await inbound(hapi, session["id"], "pending while paused")
    await receiver.wait_for(lambda rs: len(rs) >= 1, what="a failed attempt")
    paused = data_of(await hapi.request("PATCH", item, json={"active": False}))
    assert paused["active"] is False
    # An attempt already under way may end; then the worker claims nothing for it.
    await idle(hapi)
    receiver.answer(200)
    seen = len(receiver.requests)
    assert await hapi.services.deliveries.run_once() == 0
    assert len(receiver.requests) == seen, "an inactive webhook got a delivery"
    [held] = await deliveries(hapi, session["id"], hook["id"])
    assert held["status"] == "pending"
    assert data_of(await hapi.request("GET", item))["active"] is False

    resumed = data_of(await hapi.request("PATCH", item, json={"active": True}))
    assert resumed["active"] is True
    await wait_deliveries(
        hapi,
        session["id"],
        hook["id"],
        lambda ds: ds[0]["status"] == "succeeded",
        what="the held delivery after resume",
    )
    assert message_ids(receiver.acknowledged()) == [pending_id]

    # Active again: new events go as usual.
    after = await inbound(hapi, session["id"], "after resume")
    await receiver.wait_for(
        lambda rs: after in message_ids([r for r in rs if r.ok]), what="a new event"
    )


async def test_created_inactive_delivers_nothing(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, active=False)
    assert hook["active"] is False
    message_id = await inbound(hapi, session["id"], "nobody listens")
    await logged(hapi, session["id"], message_id)
    assert await deliveries(hapi, session["id"], hook["id"]) == []
    await settled(hapi)
    assert receiver.requests == []


async def test_patch_changes_url_and_events(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], f"{receiver.base}/old", events=["message.sent"])
    item = f"{hooks_path(session['id'])}/{hook['id']}"
    patched = data_of(
        await hapi.request(
            "PATCH", item, json={"url": f"{receiver.base}/new", "events": ["message.received"]}
        )
    )
    assert patched["url"] == f"{receiver.base}/new"
    assert patched["events"] == ["message.received"]
    assert patched["headers"] == {}
    assert patched["active"] is True

    message_id = await inbound(hapi, session["id"], "to the new url")
    [request] = await receiver.wait_for(lambda rs: len(rs) == 1, what="the delivery")
    assert request.path == "/new"
    assert message_ids([request]) == [message_id]
    assert verifies(hook["secret"], request)


async def test_delete_removes_the_webhook(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    base = hooks_path(session["id"])
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    item = f"{base}/{hook['id']}"
    await inbound(hapi, session["id"], "before delete")
    await receiver.wait_for(lambda rs: len(rs) == 1, what="the first delivery")

    deleted = await hapi.request("DELETE", item)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["id"] == hook["id"]

    for method, path in [
        ("GET", item),
        ("PATCH", item),
        ("DELETE", item),
        ("GET", f"{item}/deliveries"),
        ("POST", f"{item}/test"),
        ("POST", f"{item}/rotate-secret"),
    ]:
        body = {"active": True} if method == "PATCH" else None
        error_of(await hapi.request(method, path, json=body), 404, "WEBHOOK_NOT_FOUND", path)
    assert data_of(await hapi.request("GET", base)) == []

    message_id = await inbound(hapi, session["id"], "after delete")
    await logged(hapi, session["id"], message_id)
    await settled(hapi)
    assert len(receiver.requests) == 1


async def test_a_webhook_of_another_session_is_not_found(hapi: Api, receiver: Receiver) -> None:
    mine = await hapi.create_session("mine", engine="mock")
    other = await hapi.create_session("other", engine="mock")
    hook = await register(hapi, mine["id"], receiver.url)
    response = await hapi.request("GET", f"{hooks_path(other['id'])}/{hook['id']}")
    error_of(response, 404, "WEBHOOK_NOT_FOUND")
    response = await hapi.request("GET", f"{hooks_path(None)}/{hook['id']}")
    error_of(response, 404, "WEBHOOK_NOT_FOUND")


async def test_test_event_goes_to_that_webhook_only(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    target = await register(hapi, session["id"], f"{receiver.base}/target")
    await register(hapi, session["id"], f"{receiver.base}/sibling")
    await register(hapi, None, f"{receiver.base}/instance")
    await settled(hapi)
    receiver.requests.clear()

    response = await hapi.request("POST", f"{hooks_path(session['id'])}/{target['id']}/test")
    assert response.status_code in (200, 202), response.text
    sent = response.json()["data"]

    await receiver.wait_for(
        lambda rs: any(r.event == "webhook.test" for r in rs), what="the test event"
    )
    await settled(hapi)
    tests = receiver.of("webhook.test")
    assert len(tests) == 1
    [request] = tests
    assert request.path == "/target"
    body = request.payload
    assert body["event"] == "webhook.test"
    assert body["data"] == {}
    assert body["id"] == sent["eventId"] == request.headers["webhook-id"]
    assert body["sessionId"] == session["id"]
    assert verifies(target["secret"], request)

    [delivery] = await wait_deliveries(
        hapi,
        session["id"],
        target["id"],
        lambda ds: len(ds) == 1 and ds[0]["status"] == "succeeded",
        what="the test delivery in the log",
    )
    assert delivery["id"] == sent["deliveryId"]
    assert delivery["event"] == "webhook.test"


async def test_test_event_of_an_instance_webhook(hapi: Api, receiver: Receiver) -> None:
    hook = await register(hapi, None, receiver.url)
    sent = data_of(await hapi.request("POST", f"/api/webhooks/{hook['id']}/test"), 202)
    await receiver.wait_for(
        lambda rs: any(r.event == "webhook.test" for r in rs), what="the test event"
    )
    [request] = receiver.of("webhook.test")
    assert request.payload["data"] == {}
    assert request.headers["webhook-id"] == sent["eventId"]
    assert verifies(hook["secret"], request)
