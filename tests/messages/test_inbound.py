"""Inbound messages through the mock: events, normalised senders, ignored chats."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.app import Api
from tests.messages.support import (
    data_of,
    error_of,
    get_message,
    is_event,
    ready_session,
    recording,
)


async def inbound(api: Api, session: str, **body: Any) -> httpx.Response:
    return await api.request("POST", f"/api/sessions/{session}/mock/inbound", json=body)


async def test_inbound_raises_message_received(api: Api) -> None:
    bob = await ready_session(api, "bob", config={"metadata": {"team": "support"}})
    async with recording(api) as events:
        result = data_of(
            await inbound(api, "bob", **{"from": "+62 812-3456-7890", "text": "hi"}), 202
        )
        received = await events.one(is_event("message.received", bob["id"], id=result["id"]))
    data = received.data
    assert data["text"] == "hi"
    assert data["from"] == "6281234567890@s.whatsapp.net"
    assert data["chatId"] == "6281234567890@s.whatsapp.net"
    assert data["fromMe"] is False
    assert data["type"] == "text"
    assert data["timestamp"]
    assert received.metadata == {"team": "support"}
    stored = await get_message(api, "bob", result["id"])
    assert stored["text"] == "hi"
    assert stored["fromMe"] is False

    # From a group (not ignored here): the group is the chat.
    async with recording(api) as events:
        body = {"from": "123456789-123456@g.us", "text": "group hello"}
        result = data_of(await inbound(api, "bob", **body), 202)
        received = await events.one(is_event("message.received", bob["id"], id=result["id"]))
    assert received.data["chatId"] == "123456789-123456@g.us"
    assert received.data["text"] == "group hello"

    response = await inbound(api, "bob", **{"from": "not a number", "text": "x"})
    error_of(response, 400, "INVALID_CHAT_ID")


async def test_ignored_groups_raise_no_event(api: Api) -> None:
    bob = await ready_session(api, "bob", config={"ignore": {"groups": True, "status": True}})
    async with recording(api) as events:
        body = {"from": "123456789-123456@g.us", "text": "ignore me"}
        ignored = data_of(await inbound(api, "bob", **body), 202)
        body = {"from": "status@broadcast", "text": "a status"}
        status = data_of(await inbound(api, "bob", **body), 202)
        body = {"from": "+62 812-3456-7890", "text": "but not me"}
        kept = data_of(await inbound(api, "bob", **body), 202)
        # The second one arrives, so the first had its chance to arrive before it.
        await events.one(is_event("message.received", bob["id"], id=kept["id"]))
        received = events.matching(is_event("message.received", bob["id"]))
    assert [e.data["id"] for e in received] == [kept["id"]]
    assert [e.data["text"] for e in received] == ["but not me"]
    for dropped in (ignored["id"], status["id"]):
        assert all(e.data.get("id") != dropped for e in events.events)
        response = await api.request("GET", f"/api/sessions/bob/messages/{dropped}")
        error_of(response, 404, "MESSAGE_NOT_FOUND")


async def test_ignore_can_be_switched_on_later(api: Api) -> None:
    bob = await ready_session(api, "bob")
    response = await api.request(
        "PATCH", "/api/sessions/bob", json={"config": {"ignore": {"groups": True}}}
    )
    assert response.status_code == 200, response.text
    async with recording(api) as events:
        body = {"from": "123456789-123456@g.us", "text": "ignore me"}
        data_of(await inbound(api, "bob", **body), 202)
        kept = data_of(await inbound(api, "bob", **{"from": "6281234567890", "text": "ok"}), 202)
        await events.one(is_event("message.received", bob["id"], id=kept["id"]))
        received = events.matching(is_event("message.received", bob["id"]))
    assert [e.data["id"] for e in received] == [kept["id"]]


async def test_mock_routes_on_a_session_that_is_not_running_are_409(api: Api) -> None:
    await api.create_session("idle", autoStart=False)
    await ready_session(api, "stopped")
    assert (await api.request("POST", "/api/sessions/stopped/stop")).status_code == 200
    for name in ("idle", "stopped"):
        response = await inbound(api, name, **{"from": "+62 812-3456-7890", "text": "x"})
        error_of(response, 409, "SESSION_NOT_READY", name)
        response = await api.request("POST", f"/api/sessions/{name}/mock/disconnect")
        assert response.status_code == 409, (name, response.text)
        response = await api.request("POST", f"/api/sessions/{name}/mock/scan")
        assert response.status_code == 409, (name, response.text)
