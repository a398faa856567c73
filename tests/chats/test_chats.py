"""Chats: the list from stored messages, a chat's history, mark read, typing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chats.support import (
    chats,
    chats_url,
    encoded,
    history,
    inbound,
    page,
    stop,
    wait_history,
)
from tests.fixtures.app import Api
from tests.messages.support import (
    USER_SUFFIX,
    address,
    data_of,
    error_of,
    parse_time,
    plus,
    ready_pair,
    ready_session,
    send_text,
)

CAROL = "+62 812-3456-7890"
CAROL_ID = "6281234567890" + USER_SUFFIX
DAVE = "+1 555 010 0001"
DAVE_ID = "15550100001" + USER_SUFFIX


async def test_chats_newest_activity_first_with_unread_counts(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "hi bob")
    await wait_history(api, "bob", address(alice), 1)
    await inbound(api, "bob", CAROL, "carol 1")
    await inbound(api, "bob", CAROL, "carol 2")
    await inbound(api, "bob", DAVE, "dave 1")

    items, pagination = await page(api, chats_url("bob"))
    assert pagination == {"page": 1, "limit": 20, "total": 3, "totalPages": 1}
    assert [c["id"] for c in items] == [DAVE_ID, CAROL_ID, address(alice)]
    assert [c["unreadCount"] for c in items] == [1, 2, 1]
    assert [c["lastMessage"]["text"] for c in items] == ["dave 1", "carol 2", "hi bob"]
    assert all(c["isGroup"] is False for c in items)
    # A mock account tells its push name; numbers outside the mock network do not.
    assert [c["name"] for c in items] == [None, None, alice["pushName"]]
    for chat in items:
        message = chat["lastMessage"]
        assert message["chatId"] == chat["id"]
        assert message["fromMe"] is False
        assert message["status"] == "received"
        assert parse_time(chat["lastActivityAt"]) == parse_time(message["timestamp"])
    times = [parse_time(c["lastActivityAt"]) for c in items]
    assert times == sorted(times, reverse=True)

    # New activity moves a chat to the top.
    await inbound(api, "bob", CAROL, "carol 3")
    top = (await chats(api, "bob"))[0]
    assert (top["id"], top["unreadCount"], top["lastMessage"]["text"]) == (CAROL_ID, 3, "carol 3")

    second, pagination = await page(api, chats_url("bob"), page=2, limit=2)
    assert pagination == {"page": 2, "limit": 2, "total": 3, "totalPages": 2}
    assert [c["id"] for c in second] == [address(alice)]
    beyond, pagination = await page(api, chats_url("bob"), page=3, limit=2)
    assert beyond == []
    assert pagination["total"] == 3

    # The sender's side: its own message is the last, nothing unread.
    [chat] = await chats(api, "alice")
    assert chat["id"] == address(bob)
    assert chat["unreadCount"] == 0
    assert chat["lastMessage"]["fromMe"] is True
    assert chat["lastMessage"]["text"] == "hi bob"


async def test_chat_list_of_a_new_session_is_empty(api: Api) -> None:
    await api.create_session("idle", autoStart=False)
    items, pagination = await page(api, chats_url("idle"))
    assert items == []
    assert pagination == {"page": 1, "limit": 20, "total": 0, "totalPages": 0}
    for params in ({"limit": 0}, {"limit": 101}, {"page": 0}, {"limit": "x"}):
        response = await api.request("GET", chats_url("idle"), params=params)
        error_of(response, 400, "VALIDATION_ERROR", params)


async def test_group_chat_is_listed_as_a_group(api: Api) -> None:
    alice, bob = await ready_pair(api)
    response = await api.request(
        "POST", "/api/sessions/alice/groups", json={"name": "Team", "participants": [plus(bob)]}
    )
    group = data_of(response, 201)
    await send_text(api, "alice", group["id"], "hello team")
    [message] = await wait_history(api, "bob", group["id"], 1)
    assert message["from"] == address(alice)
    [chat] = await chats(api, "bob")
    assert chat["id"] == group["id"]
    assert chat["isGroup"] is True
    assert chat["unreadCount"] == 1


async def test_history_newest_first_paginated(api: Api) -> None:
    alice, bob = await ready_pair(api)
    for text in ("one", "two", "three"):
        await send_text(api, "alice", plus(bob), text)
    await wait_history(api, "bob", address(alice), 3)
    await send_text(api, "bob", plus(alice), "four")
    await wait_history(api, "alice", address(bob), 4)

    for side, chat_id, first_from_me in (
        ("alice", address(bob), False),
        ("bob", address(alice), True),
    ):
        items, pagination = await page(api, chats_url(side, chat_id, "/messages"))
        assert [m["text"] for m in items] == ["four", "three", "two", "one"], side
        assert pagination == {"page": 1, "limit": 20, "total": 4, "totalPages": 1}
        assert items[0]["fromMe"] is first_from_me
        assert all(m["chatId"] == chat_id for m in items)
        times = [parse_time(m["timestamp"]) for m in items]
        assert times == sorted(times, reverse=True)

    items, pagination = await page(api, chats_url("bob", address(alice), "/messages"), limit=3)
    assert [m["text"] for m in items] == ["four", "three", "two"]
    assert pagination == {"page": 1, "limit": 3, "total": 4, "totalPages": 2}
    items, pagination = await page(
        api, chats_url("bob", address(alice), "/messages"), page=2, limit=3
    )
    assert [m["text"] for m in items] == ["one"]

    # Every form of the chat id names the same chat, URL-encoded or not.
    for form in (
        plus(alice),
        alice["phoneNumber"],
        alice["phoneNumber"] + "@c.us",
        encoded(address(alice)),
        encoded(plus(alice)),
    ):
        texts = [m["text"] for m in await history(api, "bob", form)]
        assert texts == ["four", "three", "two", "one"], form

    # A chat with no stored messages is an empty page, not an error.
    items, pagination = await page(api, chats_url("bob", CAROL_ID, "/messages"))
    assert items == []
    assert pagination["total"] == 0


@pytest.mark.parametrize("chat_id", ["not-a-chat", "123", "12@s.whatsapp.net", "abc@g.us"])
async def test_history_of_an_impossible_chat_id_is_invalid(api: Api, chat_id: str) -> None:
    await api.create_session("idle", autoStart=False)
    response = await api.request("GET", chats_url("idle", encoded(chat_id), "/messages"))
    error_of(response, 400, "INVALID_CHAT_ID", chat_id)


async def test_mark_read(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "first")
    await send_text(api, "alice", plus(bob), "second")
    received = await wait_history(api, "bob", address(alice), 2)
    await inbound(api, "bob", CAROL, "from carol")

    calls: list[tuple[str, list[str]]] = []
    client: Any = api.services.runtime.client(bob["id"])
    original = client.mark_read

    async def spy(
        chat_id: str, message_ids: list[str], senders: dict[str, str] | None = None
    ) -> None:
        calls.append((chat_id, message_ids))
        assert senders == dict.fromkeys(message_ids, address(alice))  # who wrote each
        await original(chat_id, message_ids, senders)

    monkeypatch.setattr(client, "mark_read", spy)

    response = await api.request("POST", chats_url("bob", encoded(plus(alice)), "/read"))
    assert data_of(response) == {"chatId": address(alice), "marked": 2}
    assert calls == [(address(alice), [m["id"] for m in reversed(received)])]

    unread = {c["id"]: c["unreadCount"] for c in await chats(api, "bob")}
    assert unread == {address(alice): 0, CAROL_ID: 1}

    # Nothing left to mark: no call to WhatsApp.
    response = await api.request("POST", chats_url("bob", address(alice), "/read"))
    assert data_of(response) == {"chatId": address(alice), "marked": 0}
    assert len(calls) == 1

    # A new message is unread again; marking it marks just that one.
    await send_text(api, "alice", plus(bob), "third")
    await wait_history(api, "bob", address(alice), 3)
    assert {c["id"]: c["unreadCount"] for c in await chats(api, "bob")}[address(alice)] == 1
    response = await api.request("POST", chats_url("bob", address(alice), "/read"))
    assert data_of(response)["marked"] == 1

    response = await api.request("POST", chats_url("bob", "nope", "/read"))
    error_of(response, 400, "INVALID_CHAT_ID")


async def test_typing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, _ = await ready_pair(api)
    calls: list[tuple[str, str]] = []
    client: Any = api.services.runtime.client(alice["id"])

    async def spy(chat_id: str, state: str) -> None:
        calls.append((chat_id, state))

    monkeypatch.setattr(client, "set_presence", spy)
    url = chats_url("alice", encoded(CAROL), "/typing")
    for body, state in (
        (None, "typing"),
        ({}, "typing"),
        ({"state": "recording"}, "recording"),
        ({"state": "paused"}, "paused"),
    ):
        response = await api.request("POST", url, json=body)
        assert data_of(response) == {"chatId": CAROL_ID, "state": state}, body
    assert calls == [
        (CAROL_ID, "typing"),
        (CAROL_ID, "typing"),
        (CAROL_ID, "recording"),
        (CAROL_ID, "paused"),
    ]
    for body in ({"state": "dancing"}, {"state": "typing", "extra": 1}):
        error_of(await api.request("POST", url, json=body), 400, "VALIDATION_ERROR", body)
    error_of(await api.request("POST", chats_url("alice", "x", "/typing")), 400, "INVALID_CHAT_ID")
    assert len(calls) == 4


async def test_engine_calls_need_a_ready_session_reads_do_not(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "before the stop")
    await wait_history(api, "bob", address(alice), 1)
    await stop(api, "bob")
    await api.create_session("idle", autoStart=False)

    for session in ("bob", "idle"):
        for tail in ("/read", "/typing"):
            response = await api.request("POST", chats_url(session, address(alice), tail))
            error_of(response, 409, "SESSION_NOT_READY", (session, tail))

    # The stored chats and history stay readable while the session is stopped.
    [chat] = await chats(api, "bob")
    assert (chat["id"], chat["unreadCount"]) == (address(alice), 1)
    [message] = await history(api, "bob", address(alice))
    assert message["text"] == "before the stop"


async def test_engine_without_the_capability_is_not_supported(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready_session(api, "alice")
    engine = api.services.engines.get("mock")
    monkeypatch.setattr(engine, "capabilities", engine.capabilities - {"chats", "presence"})
    for tail, capability in (("/read", "chats"), ("/typing", "presence")):
        response = await api.request("POST", chats_url("alice", CAROL_ID, tail))
        error = error_of(response, 501, "NOT_SUPPORTED", tail)
        assert error["details"] == {"engine": "mock", "capability": capability}
    # Reads come from the database: no capability needed.
    assert await chats(api, "alice") == []


async def test_viewer_may_read_chats_but_not_mark_or_type(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "hello")
    await wait_history(api, "bob", address(alice), 1)
    viewer = await api.new_key("viewer")
    for tail in ("/read", "/typing"):
        response = await api.request("POST", chats_url("bob", address(alice), tail), key=viewer)
        error_of(response, 403, "FORBIDDEN", tail)
    items, _ = await page(api, chats_url("bob"), key=viewer)
    assert items[0]["unreadCount"] == 1  # the refused call marked nothing
    items, _ = await page(api, chats_url("bob", address(alice), "/messages"), key=viewer)
    assert len(items) == 1
    # A viewer is refused before the session is looked up: 403, not 404.
    response = await api.request("POST", chats_url("nosuch", address(alice), "/read"), key=viewer)
    error_of(response, 403, "FORBIDDEN")
