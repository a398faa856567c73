"""Helpers shared by the group tests (not a test module)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fixtures.app import ADMIN_KEY, Api
from tests.messages.support import data_of, ready_session

Account = dict[str, Any]
UNKNOWN_GROUP = "120363000000000000@g.us"


async def ready_trio(api: Api) -> tuple[Account, Account, Account]:
    """Three ready mock sessions, `alice`, `bob` and `carol`, with their phone numbers."""
    a, b, c = await asyncio.gather(
        ready_session(api, "alice"), ready_session(api, "bob"), ready_session(api, "carol")
    )
    return a, b, c


def groups_url(session: str, group_id: str | None = None, tail: str = "") -> str:
    url = f"/api/sessions/{session}/groups"
    return url + (f"/{group_id}" if group_id is not None else "") + tail


async def post_group(
    api: Api, session: str, name: str, participants: list[str], *, key: str | None = ADMIN_KEY
) -> httpx.Response:
    body = {"name": name, "participants": participants}
    return await api.request("POST", groups_url(session), key=key, json=body)


async def create_group(api: Api, session: str, name: str, participants: list[str]) -> Any:
    """Create a group and assert the 201 answer; the group."""
    return data_of(await post_group(api, session, name, participants), 201)


async def group_ids(api: Api, session: str) -> list[str]:
    """Ids of the groups `session` lists (first page of 100)."""
    response = await api.request("GET", groups_url(session), params={"limit": 100})
    return [group["id"] for group in data_of(response)]


async def group_info(api: Api, session: str, group_id: str) -> httpx.Response:
    return await api.request("GET", groups_url(session, group_id))


async def rename(api: Api, session: str, group_id: str, subject: str) -> httpx.Response:
    return await api.request("PATCH", groups_url(session, group_id), json={"subject": subject})


async def change(
    api: Api, session: str, group_id: str, action: str, participants: list[str]
) -> httpx.Response:
    body = {"action": action, "participants": participants}
    return await api.request("POST", groups_url(session, group_id, "/participants"), json=body)


def roles(group: dict[str, Any]) -> dict[str, str]:
    return {p["id"]: p["role"] for p in group["participants"]}
