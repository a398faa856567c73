"""sendAt: scheduled messages wait in the queue, never hold back earlier ones, and cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from tests.fixtures.app import Api, wait_for
from tests.messages.support import (
    address,
    error_of,
    get_message,
    is_event,
    parse_time,
    plus,
    post_text,
    ready_pair,
    ready_session,
    recording,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)


def in_seconds(seconds: float, tz: timezone = UTC) -> datetime:
    return datetime.now(UTC).astimezone(tz) + timedelta(seconds=seconds)


async def test_send_at_needs_an_offset(api: Api) -> None:
    await ready_session(api, "alice")
    naive = (datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    # A number in a string is no date either: it was read as Unix time.
    for value in (naive, "2030-01-01T09:00:00", "2030-01-01", "soon", "", "1700000000", "0.5"):
        response = await post_text(api, "alice", "+62 812-3456-7890", "x", sendAt=value)
        error = error_of(response, 400, "VALIDATION_ERROR", value)
        assert "sendAt" in str(error["details"]), error


async def test_scheduled_message_waits_and_does_not_hold_back_later_ones(api: Api) -> None:
    _alice, bob = await ready_pair(api)
    send_at = in_seconds(2, timezone(timedelta(hours=7)))
    scheduled = await send_text(api, "alice", plus(bob), "later", sendAt=send_at.isoformat())
    assert scheduled["status"] == "pending"
    assert parse_time(scheduled["sendAt"]) == send_at
    now = await send_text(api, "alice", plus(bob), "now")

    await wait_sent(api, "alice", now["id"])
    assert datetime.now(UTC) < send_at, "the unscheduled message was too slow to tell"
    assert (await get_message(api, "alice", scheduled["id"]))["status"] == "pending"
    assert transmitted_ids(await transmitted(api, "alice")) == [now["id"]]

    await wait_sent(api, "alice", scheduled["id"], timeout=10)
    log = await transmitted(api, "alice")
    assert transmitted_ids(log) == [now["id"], scheduled["id"]]
    assert parse_time(log[1]["at"]) >= send_at


async def test_scheduled_messages_go_in_due_order(api: Api) -> None:
    _alice, bob = await ready_pair(api)
    base = datetime.now(UTC)
    second = await send_text(
        api, "alice", plus(bob), "second", sendAt=(base + timedelta(seconds=2)).isoformat()
    )
    first = await send_text(
        api, "alice", plus(bob), "first", sendAt=(base + timedelta(seconds=1.5)).isoformat()
    )
    past = await send_text(
        api, "alice", plus(bob), "past", sendAt=(base - timedelta(hours=1)).isoformat()
    )
    await wait_sent(api, "alice", second["id"], timeout=10)
    await wait_sent(api, "alice", first["id"])
    ids = transmitted_ids(await transmitted(api, "alice"))
    assert ids == [past["id"], first["id"], second["id"]]


async def test_cancel_a_pending_scheduled_message(api: Api) -> None:
    await ready_session(api, "alice")
    send_at = in_seconds(1.5)
    scheduled = await send_text(
        api, "alice", "+62 812-3456-7890", "never", sendAt=send_at.isoformat()
    )
    response = await api.request("DELETE", f"/api/sessions/alice/messages/{scheduled['id']}")
    assert response.status_code == 200, response.text
    cancelled = response.json()["data"]
    assert cancelled["id"] == scheduled["id"]
    assert cancelled["status"] == "cancelled"
    assert (await get_message(api, "alice", scheduled["id"]))["status"] == "cancelled"

    # Wait past its time (this scenario is about time), then make the worker look at the
    # queue at once: nothing due is left to claim. A marker then goes through alone.
    await asyncio.sleep(max((send_at - datetime.now(UTC)).total_seconds(), 0) + 0.01)
    assert await api.services.sender.run_once() == 0
    marker = await send_text(api, "alice", "+62 812-3456-7890", "marker")
    await wait_sent(api, "alice", marker["id"])
    assert transmitted_ids(await transmitted(api, "alice")) == [marker["id"]]
    assert (await get_message(api, "alice", scheduled["id"]))["status"] == "cancelled"

    # Cancelling again is refused: it is no longer pending.
    again = await api.request("DELETE", f"/api/sessions/alice/messages/{scheduled['id']}")
    assert again.status_code == 409, again.text


async def test_delete_of_a_sent_message_revokes_it(api: Api) -> None:
    # DELETE of a message that is no longer pending is "revoke for everyone".
    alice, bob = await ready_pair(api)
    async with recording(api) as events:
        message = await send_text(api, "alice", plus(bob), "take it back")
        await wait_sent(api, "alice", message["id"])
        await events.one(is_event("message.received", bob["id"], id=message["id"]))
        response = await api.request("DELETE", f"/api/sessions/alice/messages/{message['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["data"]["id"] == message["id"]
        assert response.json()["data"]["status"] != "cancelled"
        mine = await events.one(is_event("message.revoked", alice["id"], id=message["id"]))
        theirs = await events.one(is_event("message.revoked", bob["id"], id=message["id"]))
    assert mine.data["chatId"] == address(bob)
    assert theirs.data["chatId"] == address(alice)
    await wait_for(
        lambda: get_message(api, "alice", message["id"]), lambda m: m["revoked"], 5, "revoked"
    )
    await wait_for(
        lambda: get_message(api, "bob", message["id"]), lambda m: m["revoked"], 5, "revoked"
    )
