"""Helpers shared by the chat and contact tests (not a test module)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.fixtures.app import ADMIN_KEY, Api, wait_for
from tests.messages.support import data_of


def chats_url(session: str, chat_id: str | None = None, tail: str = "") -> str:
    url = f"/api/sessions/{session}/chats"
    return url + (f"/{chat_id}" if chat_id is not None else "") + tail


def encoded(chat_id: str) -> str:
    """The chat id URL-encoded, `@` and `+` included, as a careful client sends it."""
    return quote(chat_id, safe="")


async def page(
    api: Api, url: str, *, key: str | None = ADMIN_KEY, **params: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`(data, pagination)` of a list route, asserting a paginated success."""
    response = await api.request("GET", url, key=key, params=params)
    items: list[dict[str, Any]] = data_of(response)
    pagination: dict[str, int] = response.json()["pagination"]
    return items, pagination


async def chats(api: Api, session: str, **params: Any) -> list[dict[str, Any]]:
    items, _ = await page(api, chats_url(session), **params)
    return items


async def history(api: Api, session: str, chat_id: str, **params: Any) -> list[dict[str, Any]]:
    items, _ = await page(api, chats_url(session, chat_id, "/messages"), **params)
    return items


async def inbound(api: Api, session: str, sender: str, text: str) -> str:
    """Deliver a message from `sender` to `session` and wait until it is stored; its id."""
    response = await api.request(
        "POST", f"/api/sessions/{session}/mock/inbound", json={"from": sender, "text": text}
    )
    message_id: str = data_of(response, 202)["id"]

    async def stored() -> int:
        found = await api.request("GET", f"/api/sessions/{session}/messages/{message_id}")
        return found.status_code

    await wait_for(stored, lambda status: status == 200, 10, f"inbound {message_id} stored")
    return message_id


async def wait_history(api: Api, session: str, chat_id: str, count: int) -> list[dict[str, Any]]:
    """Wait until the chat holds `count` stored messages; its first page of 100."""
    items: list[dict[str, Any]] = await wait_for(
        lambda: history(api, session, chat_id, limit=100),
        lambda items: len(items) >= count,
        10,
        f"{count} messages in {session}'s chat {chat_id}",
    )
    return items


async def stop(api: Api, session: str) -> None:
    response = await api.request("POST", f"/api/sessions/{session}/stop")
    assert response.status_code == 200, response.text
