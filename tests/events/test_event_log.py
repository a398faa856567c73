"""`GET /api/events`: the event log, oldest first, paged by cursor, filtered and scoped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.events.conftest import METADATA_A, METADATA_B, Pair
from tests.events.support import check_envelope, check_log_order, page_all
from tests.fixtures.app import Api


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


async def test_log_lists_every_event_oldest_first_with_the_envelope(api: Api, pair: Pair) -> None:
    response = await api.request("GET", "/api/events", params={"after": 0, "limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    events = data["events"]
    assert events
    assert data["nextCursor"] == events[-1]["cursor"]
    check_log_order(events)
    for event in events:
        check_envelope(event)
        assert event["engine"] == "mock", event
    by_session = {pair.a["id"]: METADATA_A, pair.b["id"]: METADATA_B}
    assert {e["sessionId"] for e in events} == set(by_session)
    for event in events:
        assert event["metadata"] == by_session[event["sessionId"]], event

    # Each session's life is there, in order.
    for session in (pair.a, pair.b):
        statuses = [
            e["data"]["status"]
            for e in events
            if e["sessionId"] == session["id"] and e["event"] == "session.status"
        ]
        assert statuses == ["created", "initializing", "qr_ready", "authenticated", "ready"]
        for e in events:
            if e["event"] == "session.status":
                assert {"status", "previousStatus"} <= set(e["data"]), e

    # Messages: inbound ones are received; A's send to B is sent, acked, and received by B.
    received = [e for e in events if e["event"] == "message.received"]
    assert {e["data"]["id"] for e in received if e["sessionId"] == pair.a["id"]} == set(
        pair.inbound_a
    )
    assert {e["data"]["id"] for e in received if e["sessionId"] == pair.b["id"]} == {
        *pair.inbound_b,
        pair.a_to_b,
    }
    for e in received:
        assert e["data"]["fromMe"] is False, e
        assert {"id", "chatId", "from", "type", "timestamp"} <= set(e["data"]), e
    a_events = [
        (e["event"], e["data"].get("status"))
        for e in events
        if e["sessionId"] == pair.a["id"] and e["data"].get("id") == pair.a_to_b
    ]
    assert a_events == [
        ("message.sent", "sent"),
        ("message.ack", "delivered"),
        ("message.ack", "read"),
    ], a_events
    # The log shows what the message resource shows.
    got = await api.request("GET", f"/api/sessions/{pair.a['id']}/messages/{pair.a_to_b}")
    assert got.json()["data"]["status"] == "read"


async def test_next_cursor_continues_where_the_page_ended(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    for limit in (1, 3, 7):
        paged: list[dict[str, Any]] = []
        after = 0
        pages = 0
        while True:
            response = await api.request(
                "GET", "/api/events", params={"after": after, "limit": limit}
            )
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            assert len(data["events"]) <= limit
            if not data["events"]:
                assert data["nextCursor"] == after
                break
            assert all(e["cursor"] > after for e in data["events"])
            paged.extend(data["events"])
            after = data["nextCursor"]
            pages += 1
            assert pages <= len(everything) + 1
        assert paged == everything, limit
        assert pages == -(-len(everything) // limit)

    # From the middle: exactly the events after that cursor.
    middle = everything[len(everything) // 2]["cursor"]
    rest = await page_all(api, after=middle)
    assert rest == [e for e in everything if e["cursor"] > middle]
    # Past the end: nothing, and the cursor stays.
    last = everything[-1]["cursor"]
    response = await api.request("GET", "/api/events", params={"after": last + 1000})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"events": [], "nextCursor": last + 1000}


async def test_the_default_after_is_the_start_of_the_log(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    response = await api.request("GET", "/api/events")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["events"] == everything[: len(data["events"])]
    assert data["events"]


async def test_filter_by_sessions_ids_or_names(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    a_id, b_id = pair.a["id"], pair.b["id"]
    only_a = [e for e in everything if e["sessionId"] == a_id]
    only_b = [e for e in everything if e["sessionId"] == b_id]
    assert only_a
    assert only_b
    assert await page_all(api, sessions=a_id) == only_a
    assert await page_all(api, sessions="alpha") == only_a
    assert await page_all(api, sessions="beta", limit=2) == only_b
    assert await page_all(api, sessions=f"{a_id},beta") == everything
    assert await page_all(api, sessions=f" alpha , {b_id} ") == everything
    assert await page_all(api, sessions="no-such-session") == []


async def test_filter_by_event_names(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    for names in (
        ["message.received"],
        ["session.status"],
        ["message.ack", "message.sent"],
    ):
        wanted = [e for e in everything if e["event"] in names]
        assert wanted, names
        assert await page_all(api, events=",".join(names)) == wanted
        assert await page_all(api, events=",".join(names), limit=2) == wanted
    combined = [
        e for e in everything if e["event"] == "message.received" and e["sessionId"] == pair.b["id"]
    ]
    assert len(combined) == len(pair.inbound_b) + 1
    assert await page_all(api, events="message.received", sessions="beta") == combined
    assert await page_all(api, events="group.update") == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": -1},
        {"limit": "many"},
        {"after": -1},
        {"after": "start"},
    ],
)
async def test_out_of_range_parameters_are_a_400(api: Api, params: dict[str, Any]) -> None:
    response = await api.request("GET", "/api/events", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "VALIDATION_ERROR"


async def test_limit_bounds_are_accepted(api: Api, pair: Pair) -> None:
    total = len(await page_all(api))
    for limit in (1, 1000):
        response = await api.request("GET", "/api/events", params={"limit": limit})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]["events"]) == min(limit, total)


async def test_a_key_scoped_to_a_session_never_sees_another(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    only_a = [e for e in everything if e["sessionId"] == pair.a["id"]]
    for role in ("operator", "viewer"):
        key = await api.new_key(role, sessions=[pair.a["id"]])
        assert await page_all(api, key) == only_a
        assert await page_all(api, key, sessions="alpha") == only_a
        assert await page_all(api, key, sessions=f"alpha,{pair.b['id']}") == only_a
        assert await page_all(api, key, events="message.received", limit=1) == [
            e for e in only_a if e["event"] == "message.received"
        ]
        for ask_for in (pair.b["id"], "beta"):
            response = await api.request(
                "GET", "/api/events", key=key, params={"sessions": ask_for}
            )
            # Either refused or empty; never B's events.
            assert response.status_code in (200, 403), response.text
            if response.status_code == 200:
                assert response.json()["data"]["events"] == [], response.text
            else:
                assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_a_viewer_key_reads_the_log(api: Api, pair: Pair) -> None:
    everything = await page_all(api)
    viewer = await api.new_key("viewer")
    assert await page_all(api, viewer) == everything
    operator = await api.new_key("operator")
    assert await page_all(api, operator, limit=5) == everything
    response = await api.request(
        "GET", "/api/events", key=None, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("key", [None, "not-a-real-key-0123456789"])
async def test_the_log_needs_a_key(api: Api, key: str | None) -> None:
    response = await api.request("GET", "/api/events", key=key)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_after_id_resumes_after_an_event_known_by_its_id(api: Api, pair: Pair) -> None:
    """A WebSocket frame or a webhook carries the event's id, not its cursor: a client
    cut off catches up from the last event it handled, by id."""
    everything = await page_all(api)
    middle = everything[len(everything) // 2]
    response = await api.request(
        "GET", "/api/events", params={"afterId": middle["id"], "limit": 1000}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["events"] == [
        e for e in everything if e["cursor"] > middle["cursor"]
    ]

    for unknown in ("evt_unknown", "x" * 40):
        response = await api.request("GET", "/api/events", params={"afterId": unknown})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "NOT_FOUND"
    response = await api.request("GET", "/api/events", params={"afterId": "x" * 41})
    assert response.status_code == 400, response.text

    # Another session's event is as unknown to a key limited to A as one never logged.
    of_b = next(e for e in everything if e["sessionId"] == pair.b["id"])
    key = await api.new_key("viewer", sessions=[pair.a["id"]])
    response = await api.request("GET", "/api/events", key=key, params={"afterId": of_b["id"]})
    assert response.status_code == 404, response.text
