"""Deliveries outlive the app: made while the receiver is down, sent after a restart."""

from __future__ import annotations

from tests.fixtures.app import wait_for
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    deliveries,
    first_seen,
    inbound,
    message_ids,
    ready_session,
    register,
    verifies,
)


async def test_events_made_while_down_arrive_after_a_restart_in_order(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_attempts=1000)
    sessions = [await ready_session(api), await ready_session(api)]
    hook = await register(api, None, receiver.url, events=["message.received"])
    await receiver.stop()

    sent: dict[str, list[str]] = {s["id"]: [] for s in sessions}
    for i in range(5):
        for session in sessions:
            sent[session["id"]].append(await inbound(api, session["id"], f"message {i}"))
    await wait_for(
        lambda: deliveries(api, None, hook["id"]),
        lambda ds: len(ds) == 10 and any(d["attempts"] >= 1 for d in ds),
        what="ten deliveries, tried while the receiver is down",
    )
    before = await deliveries(api, None, hook["id"])
    assert {d["status"] for d in before} == {"pending"}
    await apps.stop(api)

    api = await apps.start(webhook_max_attempts=1000)
    await receiver.start()
    await wait_for(
        lambda: deliveries(api, None, hook["id"]),
        all_succeeded(10),
        timeout=20,
        what="every delivery after the restart",
    )
    acknowledged = receiver.acknowledged("message.received")
    assert all(verifies(hook["secret"], r) for r in acknowledged)
    for session_id, expected in sent.items():
        mine = [r for r in acknowledged if r.payload["sessionId"] == session_id]
        arrived = message_ids(mine)
        assert set(arrived) == set(expected), "an event was lost"
        assert first_seen(arrived) == expected, "events of a session arrived out of order"
        ids = {r.payload["id"] for r in mine}
        assert len(ids) == len(expected)
        assert all(r.headers["webhook-id"] == r.payload["id"] for r in mine)


async def test_a_delivery_in_flight_at_shutdown_goes_again_soon_after_restart(
    apps: Apps, receiver: Receiver
) -> None:
    # The app stops (gracefully) while a request is under way; the next app must not
    # wait for the stopped one's claim on the delivery to expire.
    api = await apps.start(webhook_timeout_s=5.0)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    receiver.sleep(60.0)
    message_id = await inbound(api, session["id"], "in flight")
    await receiver.wait_for(lambda rs: len(rs) == 1, what="the request under way")
    await apps.stop(api)

    receiver.answer(200)
    api = await apps.start(webhook_timeout_s=5.0)
    await wait_for(
        lambda: deliveries(api, session["id"], hook["id"]),
        lambda ds: len(ds) == 1 and ds[0]["status"] == "succeeded",
        timeout=15,
        what="the interrupted delivery after the restart",
    )
    [first, *again] = receiver.requests
    assert again, "the delivery was not sent again"
    assert message_ids([first, *again]) == [message_id] * (1 + len(again))
    assert {r.headers["webhook-id"] for r in [first, *again]} == {first.payload["id"]}
    assert again[-1].ok
