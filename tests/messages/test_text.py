"""Sending a text message: the 202 answer, the status it moves through, the recipient."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    MESSAGE_ID_RE,
    address,
    error_of,
    get_message,
    is_event,
    ready_pair,
    recording,
    send_text,
    transmitted,
    transmitted_ids,
    wait_message,
)

# Long enough that polling sees every step, short enough to keep the test fast.
ACK_DELAY_MS = 600


@pytest.fixture
async def paced_api(app_factory: AppFactory) -> AsyncIterator[Api]:
    async with app_factory.running(mock_ack_delay_ms=ACK_DELAY_MS) as started:
        yield started


async def test_send_text_is_accepted_pending(api: Api) -> None:
    alice, bob = await ready_pair(api)
    response = await api.request(
        "POST",
        "/api/sessions/alice/messages/text",
        json={"chatId": "+" + bob["phoneNumber"], "text": "hello bob"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    assert set(body["meta"]) >= {"timestamp", "requestId"}
    message = body["data"]
    assert MESSAGE_ID_RE.fullmatch(message["id"]), message["id"]
    assert message["chatId"] == address(bob)
    assert message["status"] == "pending"
    assert message["fromMe"] is True
    assert message["type"] == "text"
    assert message["text"] == "hello bob"
    assert message["sessionId"] == alice["id"]
    assert message["from"] == address(alice)

    # A message belongs to its session: another session does not show it.
    other = await send_text(api, "alice", "+62 812-3456-7890", "mine")
    error_of(
        await api.request("GET", f"/api/sessions/bob/messages/{other['id']}"),
        404,
        "MESSAGE_NOT_FOUND",
    )
    assert (await get_message(api, alice["id"], other["id"]))["text"] == "mine"


async def test_message_moves_through_sent_delivered_read(paced_api: Api) -> None:
    api = paced_api
    alice, bob = await ready_pair(api)
    async with recording(api) as events:
        message = await send_text(api, "alice", "+" + bob["phoneNumber"], "watch me")
        seen: list[str] = []

        def record(m: dict[str, str]) -> bool:
            if not seen or seen[-1] != m["status"]:
                seen.append(m["status"])
            return m["status"] == "read"

        await wait_for(lambda: get_message(api, "alice", message["id"]), record, 10, "read")
        assert seen[-3:] == ["sent", "delivered", "read"], seen
        assert seen in (["pending", "sent", "delivered", "read"], ["sent", "delivered", "read"])

        sent = await events.one(is_event("message.sent", alice["id"], id=message["id"]))
        assert sent.data["fromMe"] is True
        assert sent.data["chatId"] == address(bob)
        assert sent.data["text"] == "watch me"
        acks = await events.wait(is_event("message.ack", alice["id"], id=message["id"]), 2)
        assert [a.data["status"] for a in acks] == ["delivered", "read"]
        assert all(a.data["chatId"] == address(bob) for a in acks)
        # The events come in the order of the statuses.
        order = [e for e in events.events if e.data.get("id") == message["id"]]
        assert order.index(sent) < order.index(acks[0]) < order.index(acks[1])


async def test_recipient_receives_the_same_id(api: Api) -> None:
    alice, bob = await ready_pair(api)
    async with recording(api) as events:
        message = await send_text(api, "alice", bob["phoneNumber"], "same id please")
        received = await events.one(is_event("message.received", bob["id"]))
    assert received.data["id"] == message["id"]
    assert received.data["fromMe"] is False
    assert received.data["text"] == "same id please"
    assert received.data["type"] == "text"
    assert received.data["chatId"] == address(alice)
    assert received.data["from"] == address(alice)
    wire = received.envelope()
    assert wire["event"] == "message.received"
    assert wire["sessionId"] == bob["id"]

    # The recipient stores it under the same id, and the sender's log has it once.
    stored = await get_message(api, "bob", message["id"])
    assert stored["fromMe"] is False
    assert stored["text"] == "same id please"
    await wait_message(api, "alice", message["id"], "read")
    assert transmitted_ids(await transmitted(api, "alice")) == [message["id"]]


async def test_unknown_ids_and_invalid_bodies(api: Api) -> None:
    await api.create_session("alice", autoStart=False)
    unknown = "/api/sessions/alice/messages/3EB0000000000000000000AA"
    error = error_of(await api.request("GET", unknown), 404, "MESSAGE_NOT_FOUND")
    assert "3EB0000000000000000000AA" in str(error["details"])
    error_of(await api.request("DELETE", unknown), 404, "MESSAGE_NOT_FOUND")
    response = await api.request(
        "POST", "/api/sessions/nobody/messages/text", json={"chatId": "6281234567890", "text": "x"}
    )
    error_of(response, 404, "SESSION_NOT_FOUND")

    bodies: list[object] = [
        {"chatId": "6281234567890"},
        {"text": "no chat"},
        {"chatId": "6281234567890", "text": ""},
        {"chatId": "6281234567890", "text": "x", "unknown": 1},
        {"chatId": 6281234567890, "text": "x"},
        {"chatId": "", "text": "x"},
        {"chatId": "6281234567890", "text": "x", "sendAt": "tomorrow"},
        [],
        "text",
    ]
    for body in bodies:
        response = await api.request("POST", "/api/sessions/alice/messages/text", json=body)
        error_of(response, 400, "VALIDATION_ERROR", body)
