"""Retries, order per (webhook, session), running out of attempts, replay, timeouts."""

from __future__ import annotations

import asyncio
import re

from tests.fixtures.app import Api, wait_for
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Received, Receiver
from tests.webhooks.support import (
    data_of,
    delivered_once,
    deliveries,
    first_seen,
    hooks_path,
    inbound,
    message_ids,
    ready_session,
    register,
    verifies,
    wait_deliveries,
)


async def test_failed_attempts_are_retried_until_acknowledged_once(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    receiver.fail_first(3, status=500)

    message_id = await inbound(hapi, session["id"], "retry me")

    [delivery] = await wait_deliveries(
        hapi,
        session["id"],
        hook["id"],
        lambda ds: len(ds) == 1 and ds[0]["status"] == "succeeded",
        what="the delivery to succeed",
    )
    requests = receiver.of("message.received")
    assert [r.answered for r in requests] == [500, 500, 500, 200]
    assert len(receiver.acknowledged()) == 1
    event_id = requests[0].payload["id"]
    assert all(r.headers["webhook-id"] == event_id for r in requests)
    assert all(r.payload["id"] == event_id for r in requests)
    assert all(r.payload["data"]["id"] == message_id for r in requests)
    assert all(verifies(hook["secret"], r) for r in requests)
    # Backoff: every retry comes later than the one before.
    times = [r.at for r in requests]
    assert times == sorted(times)

    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 4
    assert delivery["eventId"] == event_id
    assert delivery["event"] == "message.received"
    assert delivery["sessionId"] == session["id"]
    assert delivery["webhookId"] == hook["id"]
    assert delivery["lastStatusCode"] == 200
    assert delivery["nextAttemptAt"] is None
    log = delivery["log"]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert [a["statusCode"] for a in log] == [500, 500, 500, 200]
    assert all(a["error"] for a in log[:3]), log
    assert log[3]["error"] is None
    assert [a["at"] for a in log] == sorted(a["at"] for a in log)

    # Nothing more comes after the acknowledgement: nothing is left to claim.
    assert await hapi.services.deliveries.run_once() == 0
    assert len(receiver.of("message.received")) == 4


async def test_later_events_wait_while_the_oldest_is_retried(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_attempts=1000)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    blocked: list[str] = []  # the event id that fails while the gate is closed
    gate = asyncio.Event()

    def respond(request: Received) -> int:
        if not blocked:
            blocked.append(request.payload["id"])
        if request.payload["id"] == blocked[0] and not gate.is_set():
            return 503
        return 200

    receiver.respond = respond
    first = await inbound(api, session["id"], "first")
    await receiver.wait_for(lambda rs: len(rs) >= 2, what="two failed attempts")
    later = [await inbound(api, session["id"], f"later {i}") for i in range(4)]
    await wait_deliveries(
        api, session["id"], hook["id"], lambda ds: len(ds) == 5, what="five deliveries"
    )
    # The oldest keeps being retried; the later ones wait their turn.
    attempts_before = len(receiver.requests)
    await receiver.wait_for(
        lambda rs: len(rs) >= attempts_before + 2, what="more retries of the oldest"
    )
    assert message_ids(receiver.requests) == [first] * len(receiver.requests)
    pending = await deliveries(api, session["id"], hook["id"])
    assert [d["status"] for d in pending] == ["pending"] * 5
    assert [d["attempts"] for d in pending[1:]] == [0] * 4

    gate.set()
    await wait_deliveries(
        api,
        session["id"],
        hook["id"],
        lambda ds: [d["status"] for d in ds] == ["succeeded"] * 5,
        what="all five delivered",
    )
    arrivals = message_ids(receiver.requests)
    first_ok = next(i for i, r in enumerate(receiver.requests) if r.ok)
    assert set(arrivals[:first_ok]) == {first}, "a later event overtook the oldest"
    assert first_seen(arrivals) == [first, *later]
    assert [m for m, r in zip(arrivals, receiver.requests, strict=True) if r.ok] == [
        first,
        *later,
    ]


async def test_a_failed_delivery_lets_the_next_go_and_can_be_replayed(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_attempts=2)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    doomed: list[str] = []  # fails every time while `healed` is not set
    healed = asyncio.Event()

    def respond(request: Received) -> int:
        if not doomed:
            doomed.append(request.payload["id"])
        if request.payload["id"] == doomed[0] and not healed.is_set():
            return 500
        return 200

    receiver.respond = respond
    first = await inbound(api, session["id"], "doomed")
    later = [await inbound(api, session["id"], f"next {i}") for i in range(3)]

    final = await wait_deliveries(
        api,
        session["id"],
        hook["id"],
        lambda ds: len(ds) == 4 and all(d["status"] != "pending" for d in ds),
        what="the deliveries to settle",
    )
    assert [d["status"] for d in final] == ["failed", "succeeded", "succeeded", "succeeded"]
    failed = final[0]
    assert failed["attempts"] == 2
    assert [a["statusCode"] for a in failed["log"]] == [500, 500]
    assert failed["lastStatusCode"] == 500
    assert failed["nextAttemptAt"] is None
    arrivals = message_ids(receiver.requests)
    assert arrivals == [first, first, *later], "the next went on only after the failure"

    # Replay the failed one: delivered again, with the same webhook-id.
    healed.set()
    path = f"{hooks_path(session['id'])}/{hook['id']}/deliveries/{failed['id']}/retry"
    replayed = data_of(await api.request("POST", path))
    assert replayed["id"] == failed["id"]
    assert replayed["status"] == "pending"
    [again] = [
        d
        for d in await wait_deliveries(
            api,
            session["id"],
            hook["id"],
            lambda ds: ds[0]["status"] == "succeeded",
            what="the replay to succeed",
        )
        if d["id"] == failed["id"]
    ]
    assert again["eventId"] == failed["eventId"]
    # The log keeps the failed attempts and the replay, in the order they happened.
    log = again["log"]
    assert len(log) == 3, log
    assert [a["at"] for a in log] == sorted(a["at"] for a in log), log
    assert [a["statusCode"] for a in log] == [500, 500, 200], log
    replay_requests = [r for r in receiver.requests if r.payload["id"] == failed["eventId"]]
    assert len(replay_requests) == 3
    assert {r.headers["webhook-id"] for r in replay_requests} == {failed["eventId"]}
    assert replay_requests[-1].ok
    assert verifies(hook["secret"], replay_requests[-1])
    assert len(receiver.requests) == 6


async def test_retry_of_an_unknown_delivery_is_404(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url)
    path = f"{hooks_path(session['id'])}/{hook['id']}/deliveries/999999/retry"
    response = await hapi.request("POST", path)
    assert response.status_code == 404, response.text
    assert response.json()["success"] is False


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_timeout_s=0.5, webhook_max_attempts=2)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    receiver.sleep(2.0)

    await inbound(api, session["id"], "slow")

    [delivery] = await wait_deliveries(
        api,
        session["id"],
        hook["id"],
        lambda ds: len(ds) == 1 and ds[0]["status"] == "failed",
        what="the delivery to fail",
    )
    assert delivery["attempts"] == 2
    for attempt in delivery["log"]:
        assert attempt["statusCode"] is None
        assert re.search(r"time.?out|timed out|no answer within", attempt["error"], re.I), attempt
        # The error says the timeout fired; an upper bound on the duration would only
        # measure how loaded the machine was (a full run once saw 4 s).
        assert attempt["durationMs"] >= 400, attempt
    assert delivery["lastStatusCode"] is None
    assert re.search(r"time.?out|timed out|no answer within", delivery["lastError"], re.I)
    assert len(receiver.of("message.received")) == 2


async def test_a_receiver_that_is_down_is_retried_until_it_is_up(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    await receiver.stop()

    message_id = await inbound(hapi, session["id"], "while down")
    await wait_deliveries(
        hapi,
        session["id"],
        hook["id"],
        lambda ds: len(ds) == 1 and ds[0]["attempts"] >= 2,
        what="failed attempts while down",
    )
    [down] = await deliveries(hapi, session["id"], hook["id"])
    assert down["status"] == "pending"
    assert down["nextAttemptAt"] is not None
    assert all(a["statusCode"] is None and a["error"] for a in down["log"])

    await receiver.start()
    await wait_for(
        lambda: deliveries(hapi, session["id"], hook["id"]),
        lambda ds: ds[0]["status"] == "succeeded",
        what="the delivery after the receiver came up",
    )
    assert message_ids(receiver.acknowledged()) == [message_id]


async def test_a_replayed_success_keeps_its_first_success_in_the_log(
    hapi: Api, receiver: Receiver
) -> None:
    """A success is kept on its delivery row, not as an attempt row; a replay makes it a
    row of its own first, so the log still shows both deliveries, in order."""
    done = await delivered_once(hapi, receiver.url, "twice")
    session, hook, message_id, first = done.session, done.hook, done.message_id, done.delivery
    [success] = first["log"]
    assert (success["attempt"], success["statusCode"], success["error"]) == (1, 200, None)
    assert success["at"] == first["updatedAt"]
    assert success["durationMs"] >= 0

    replayed = data_of(await hapi.request("POST", done.retry_path()))
    assert replayed["status"] == "pending"
    assert replayed["log"] == first["log"]
    [again] = await wait_deliveries(
        hapi,
        session["id"],
        hook["id"],
        lambda ds: ds[0]["status"] == "succeeded",
        what="the replay",
    )
    assert [(a["attempt"], a["statusCode"]) for a in again["log"]] == [(1, 200), (1, 200)]
    assert again["log"][0] == success
    assert again["log"][0]["at"] <= again["log"][1]["at"]
    assert message_ids(receiver.acknowledged()) == [message_id, message_id]
