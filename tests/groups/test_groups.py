"""Groups across three mock sessions: create, list, events, admin rights, membership."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from openwa.events.types import Event
from tests.fixtures.app import Api, wait_for
from tests.groups.support import (
    change,
    create_group,
    group_ids,
    group_info,
    groups_url,
    ready_trio,
    rename,
    roles,
)
from tests.messages.support import (
    address,
    data_of,
    error_of,
    is_event,
    parse_time,
    plus,
    ready_pair,
    recording,
    send_text,
)

GROUP_ID_RE = re.compile(r"^[0-9]{5,20}@g\.us$")


def group_update(session_id: str, group_id: str, action: str) -> Callable[[Event], bool]:
    return is_event("group.update", session_id, groupId=group_id, action=action)


async def test_create_group_with_two_members(api: Api) -> None:
    a, b, c = await ready_trio(api)
    async with recording(api) as events:
        # One participant as a typed number, one as an address: both are normalised.
        group = await create_group(api, "alice", "  Team  ", [plus(b), address(c)])
        assert GROUP_ID_RE.fullmatch(group["id"]), group["id"]
        assert group["subject"] == "Team"
        assert group["owner"] == address(a)
        assert roles(group) == {
            address(a): "superadmin",
            address(b): "member",
            address(c): "member",
        }
        assert group["settings"] == {"announce": False, "restrict": False}
        assert group["description"] is None
        assert parse_time(group["createdAt"]).tzinfo is not None

        for member in (a, b, c):
            event = await events.one(group_update(member["id"], group["id"], "created"))
            assert sorted(event.data["participants"]) == sorted([address(b), address(c)])
            assert event.data["by"] == address(a)
            assert event.engine == "mock"

    for name in ("alice", "bob", "carol"):
        assert await group_ids(api, name) == [group["id"]]
    seen_by_bob = data_of(await group_info(api, "bob", group["id"]))
    assert seen_by_bob == group


async def test_group_update_is_in_the_event_log(api: Api) -> None:
    a, b, c = await ready_trio(api)
    group = await create_group(api, "alice", "Logged", [plus(b), plus(c)])

    async def logged() -> list[dict[str, Any]]:
        response = await api.request(
            "GET", "/api/events", params={"sessions": "bob", "events": "group.update"}
        )
        items: list[dict[str, Any]] = data_of(response)["events"]
        return items

    items = await wait_for(logged, lambda found: len(found) >= 1, 10, "group.update in the log")
    assert [item["sessionId"] for item in items] == [b["id"]]
    data = items[0]["data"]
    assert data["groupId"] == group["id"]
    assert data["action"] == "created"
    assert sorted(data["participants"]) == sorted([address(b), address(c)])
    assert data["by"] == address(a)


async def test_only_admins_change_the_group(api: Api) -> None:
    a, b, c = await ready_trio(api)
    group = await create_group(api, "alice", "Team", [plus(b), plus(c)])
    gid = group["id"]
    async with recording(api) as events:
        renamed = data_of(await rename(api, "alice", gid, "Team 2"))
        assert renamed["subject"] == "Team 2"
        event = await events.one(group_update(c["id"], gid, "subject"))
        assert event.data["by"] == address(a)

        refused = error_of(await rename(api, "bob", gid, "Bob's team"), 422, "ENGINE_ERROR")
        assert "admin" in refused["details"]["reason"]
        assert refused["details"]["groupId"] == gid
        error_of(
            await api.request("GET", groups_url("bob", gid, "/invite-code")), 422, "ENGINE_ERROR"
        )

        promoted = data_of(await change(api, "alice", gid, "promote", [plus(b)]))
        assert promoted == [{"id": address(b), "status": "ok"}]
        event = await events.one(group_update(c["id"], gid, "promote"))
        assert event.data["participants"] == [address(b)]

    renamed = data_of(await rename(api, "bob", gid, "Bob's team"))
    assert renamed["subject"] == "Bob's team"
    assert roles(renamed)[address(b)] == "admin"
    assert data_of(await group_info(api, "carol", gid))["subject"] == "Bob's team"

    changed = data_of(
        await api.request(
            "PATCH",
            groups_url("bob", gid),
            json={"description": "Leads", "settings": {"announce": True}},
        )
    )
    assert changed["description"] == "Leads"
    assert changed["settings"] == {"announce": True, "restrict": False}

    # The owner can be neither demoted nor removed; a stranger is not a member.
    stranger = "+1 555 019 9999"
    results = data_of(await change(api, "bob", gid, "demote", [plus(a), stranger]))
    assert results == [
        {"id": address(a), "status": "not_allowed"},
        {"id": "15550199999@s.whatsapp.net", "status": "not_member"},
    ]


async def test_invite_code_for_admins(api: Api) -> None:
    _, b, _ = await ready_trio(api)
    gid = (await create_group(api, "alice", "Invites", [plus(b)]))["id"]
    invite = data_of(await api.request("GET", groups_url("alice", gid, "/invite-code")))
    assert invite["code"]
    assert invite["link"] == "https://chat.whatsapp.com/" + invite["code"]
    refused = error_of(
        await api.request("GET", groups_url("bob", gid, "/invite-code")), 422, "ENGINE_ERROR"
    )
    assert "not an admin" in refused["details"]["reason"]
    # Not a member at all.
    error_of(
        await api.request("GET", groups_url("carol", gid, "/invite-code")), 422, "ENGINE_ERROR"
    )


async def test_removed_member_loses_the_group(api: Api) -> None:
    _, b, c = await ready_trio(api)
    gid = (await create_group(api, "alice", "Team", [plus(b), plus(c)]))["id"]
    async with recording(api) as events:
        removed = data_of(await change(api, "alice", gid, "remove", [address(c)]))
        assert removed == [{"id": address(c), "status": "ok"}]
        event = await events.one(group_update(c["id"], gid, "remove"))
        assert event.data["participants"] == [address(c)]
        await events.one(group_update(b["id"], gid, "remove"))

    assert await group_ids(api, "carol") == []
    refused = error_of(await group_info(api, "carol", gid), 422, "ENGINE_ERROR")
    assert "not a participant" in refused["details"]["reason"]
    assert address(c) not in roles(data_of(await group_info(api, "alice", gid)))

    # Adding back: carol is a member again, bob was one already.
    added = data_of(await change(api, "alice", gid, "add", [plus(c), plus(b)]))
    assert added == [
        {"id": address(c), "status": "ok"},
        {"id": address(b), "status": "already_member"},
    ]
    assert await group_ids(api, "carol") == [gid]


async def test_leave(api: Api) -> None:
    a, b, _ = await ready_trio(api)
    gid = (await create_group(api, "alice", "Team", [plus(b)]))["id"]
    async with recording(api) as events:
        left = data_of(await api.request("POST", groups_url("bob", gid, "/leave")))
        assert left == {"id": gid, "left": True}
        event = await events.one(group_update(a["id"], gid, "leave"))
        assert event.data["participants"] == [address(b)]
        assert event.data["by"] == address(b)
    assert await group_ids(api, "bob") == []
    assert list(roles(data_of(await group_info(api, "alice", gid)))) == [address(a)]
    again = error_of(
        await api.request("POST", groups_url("bob", gid, "/leave")), 422, "ENGINE_ERROR"
    )
    assert again["details"]["groupId"] == gid


async def test_message_to_the_group_reaches_every_member(api: Api) -> None:
    a, b, c = await ready_trio(api)
    gid = (await create_group(api, "alice", "Chat", [plus(b), plus(c)]))["id"]
    async with recording(api) as events:
        sent = await send_text(api, "alice", gid, "hello group")
        assert sent["chatId"] == gid
        for member in (b, c):
            received: Event = await events.one(
                is_event("message.received", member["id"], id=sent["id"])
            )
            assert received.data["chatId"] == gid
            assert received.data["from"] == address(a)
            assert received.data["text"] == "hello group"
            assert received.data["fromMe"] is False


async def test_group_list_is_paginated(api: Api) -> None:
    _, b = await ready_pair(api)
    made = [(await create_group(api, "alice", f"G{i}", [plus(b)]))["id"] for i in range(3)]
    response = await api.request("GET", groups_url("alice"), params={"page": 2, "limit": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 3, "totalPages": 2}
    assert len(body["data"]) == 1
    first = data_of(await api.request("GET", groups_url("alice"), params={"limit": 2}))
    assert sorted([g["id"] for g in first] + [body["data"][0]["id"]]) == sorted(made)
    beyond = await api.request("GET", groups_url("bob"), params={"page": 3, "limit": 2})
    assert data_of(beyond) == []
    assert beyond.json()["pagination"]["total"] == 3
