"""The events of a session, as the in-process bus hands them to the WebSocket and webhooks."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from openwa.events.types import Event
from tests.fixtures.app import Api
from tests.sessions.support import (
    NORMAL_LIFE,
    PNG_SIGNATURE,
    collect_until,
    is_status,
    next_event,
)

ENVELOPE_FIELDS = {"id", "event", "sessionId", "timestamp", "data", "engine", "metadata"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def check_envelope(event: Event, session_id: str, metadata: dict[str, str]) -> dict[str, Any]:
    wire = event.envelope()
    assert set(wire) == ENVELOPE_FIELDS, wire
    assert wire["id"]
    assert wire["sessionId"] == session_id
    assert wire["engine"] == "mock"
    assert wire["metadata"] == metadata
    assert ISO_UTC.fullmatch(wire["timestamp"]), wire["timestamp"]
    stamp = datetime.fromisoformat(wire["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert isinstance(wire["data"], dict)
    return wire


def status_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event == "session.status"]


async def test_events_of_a_normal_life(api: Api) -> None:
    sub = api.services.bus.subscribe()
    try:
        created = await api.create_session("evented", config={"metadata": {"team": "sales"}})
        events = await collect_until(sub, created["id"], is_status("ready"))
    finally:
        sub.close()

    wires = [check_envelope(e, created["id"], {"team": "sales"}) for e in events]
    assert len({w["id"] for w in wires}) == len(wires), "event ids must be unique"
    stamps = [w["timestamp"] for w in wires]
    assert stamps == sorted(stamps)

    statuses = status_events(events)
    assert [e.data["status"] for e in statuses] == NORMAL_LIFE
    previous: str | None = None
    for event in statuses:
        assert set(event.data) <= {"status", "previousStatus", "reason"}
        assert {"status", "previousStatus"} <= set(event.data)
        assert event.data["previousStatus"] == previous
        assert isinstance(event.data.get("reason", ""), str)
        previous = event.data["status"]

    names = [e.event if e.event != "session.status" else e.data["status"] for e in events]
    assert names.count("session.qr") == 1
    # The QR event comes with the move to qr_ready, before the link.
    assert names.index("qr_ready") < names.index("session.qr") < names.index("authenticated")

    qr = next(e for e in events if e.event == "session.qr")
    assert set(qr.data) == {"qr", "image"}
    assert isinstance(qr.data["qr"], str)
    assert qr.data["qr"]
    prefix = "data:image/png;base64,"
    assert qr.data["image"].startswith(prefix)
    assert base64.b64decode(qr.data["image"][len(prefix) :]).startswith(PNG_SIGNATURE)


async def test_qr_event_matches_the_qr_route(slow_api: Api) -> None:
    api = slow_api
    sub = api.services.bus.subscribe()
    try:
        created = await api.create_session("showqr")
        event = await next_event(
            sub, lambda e: e.session_id == created["id"] and e.event == "session.qr"
        )
    finally:
        sub.close()
    response = await api.request("GET", "/api/sessions/showqr/qr")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["qr"] == event.data["qr"]


async def test_lifecycle_events_carry_reasons(api: Api) -> None:
    # Subscribe first: the bus is fed from the event log after commit, so a late
    # subscriber could still be handed events of changes made before it subscribed.
    sub = api.services.bus.subscribe()
    try:
        created = await api.create_session("reasons")
        await collect_until(sub, created["id"], is_status("ready"))
        response = await api.request(
            "POST", "/api/sessions/reasons/mock/disconnect", json={"reason": "storm"}
        )
        assert response.status_code == 200, response.text
        events = await collect_until(sub, created["id"], is_status("ready"))
        await api.request("POST", "/api/sessions/reasons/stop")
        events += await collect_until(sub, created["id"], is_status("stopped"))
        await api.request("POST", "/api/sessions/reasons/start")
        events += await collect_until(sub, created["id"], is_status("ready"))
        await api.request("POST", "/api/sessions/reasons/logout")
        events += await collect_until(sub, created["id"], is_status("stopped"))
    finally:
        sub.close()
    changes = [(e.data["previousStatus"], e.data["status"]) for e in status_events(events)]
    assert changes == [
        ("ready", "disconnected"),
        ("disconnected", "initializing"),
        ("initializing", "authenticated"),
        ("authenticated", "ready"),
        ("ready", "stopped"),
        ("stopped", "initializing"),
        ("initializing", "authenticated"),
        ("authenticated", "ready"),
        ("ready", "stopped"),
    ]
    assert status_events(events)[0].data["reason"] == "storm"
    for event in status_events(events):
        assert event.data.get("reason"), event
        check_envelope(event, created["id"], {})
    # Reconnects and starts with a kept device show no QR.
    assert all(e.event != "session.qr" for e in events)


async def test_metadata_follows_config_changes(api: Api) -> None:
    created = await api.create_session(
        "tagged", autoStart=False, config={"metadata": {"team": "sales"}}
    )
    sub = api.services.bus.subscribe()
    try:
        await api.request("POST", "/api/sessions/tagged/start")
        first = await collect_until(sub, created["id"], is_status("ready"))
        assert {tuple(sorted(e.metadata.items())) for e in first} == {(("team", "sales"),)}

        response = await api.request(
            "PATCH",
            "/api/sessions/tagged",
            json={"config": {"metadata": {"team": "support", "tier": "gold"}}},
        )
        assert response.status_code == 200, response.text
        await api.request("POST", "/api/sessions/tagged/stop")
        stopped = await next_event(
            sub, lambda e: e.session_id == created["id"] and is_status("stopped")(e)
        )
        assert stopped.metadata == {"team": "support", "tier": "gold"}
        assert stopped.envelope()["metadata"] == {"team": "support", "tier": "gold"}

        response = await api.request(
            "PATCH", "/api/sessions/tagged", json={"config": {"metadata": None}}
        )
        assert response.status_code == 200, response.text
        await api.request("POST", "/api/sessions/tagged/start")
        again = await collect_until(sub, created["id"], is_status("ready"))
        assert again
        assert all(e.metadata == {} for e in again)
        assert all(e.envelope()["metadata"] == {} for e in again)
    finally:
        sub.close()


async def test_events_name_their_own_session(api: Api) -> None:
    sub = api.services.bus.subscribe()
    try:
        quiet = await api.create_session("quiet", autoStart=False)
        one = await api.create_session("one", config={"metadata": {"who": "one"}})
        two = await api.create_session("two", config={"metadata": {"who": "two"}})
        seen: dict[str, list[Event]] = {quiet["id"]: [], one["id"]: [], two["id"]: []}

        def both_ready(event: Event) -> bool:
            seen[event.session_id].append(event)
            running = (seen[one["id"]], seen[two["id"]])
            return all(any(is_status("ready")(e) for e in events) for events in running)

        await next_event(sub, both_ready)
        # The session that was not started said only that it was created...
        assert [e.event for e in seen[quiet["id"]]] == ["session.created", "session.status"]
        wire = check_envelope(seen[quiet["id"]][1], quiet["id"], {})
        assert wire["event"] == "session.status"
        assert wire["data"]["status"] == "created"
        assert wire["data"]["previousStatus"] is None
        # ... until it is started.
        await api.request("POST", "/api/sessions/quiet/start")
        started = await next_event(sub, lambda e: e.session_id == quiet["id"])
        assert started.data["status"] == "initializing"
        assert started.data["previousStatus"] == "created"
    finally:
        sub.close()
    for session, name in ((one, "one"), (two, "two")):
        events = seen[session["id"]]
        assert [e.data["status"] for e in status_events(events)] == NORMAL_LIFE
        for event in events:
            check_envelope(event, session["id"], {"who": name})


async def test_creating_and_deleting_a_session_are_events(api: Api) -> None:
    """`session.created` / `session.deleted` `{id, name, engine}`, written with the row
    change; the log keeps them after the session is gone."""
    sub = api.services.bus.subscribe()
    try:
        created = await api.create_session("fleeting", autoStart=False)
        first = await next_event(sub, lambda e: e.session_id == created["id"])
        response = await api.request("DELETE", "/api/sessions/fleeting")
        assert response.status_code == 200, response.text
        gone = await next_event(
            sub, lambda e: e.session_id == created["id"] and e.event == "session.deleted"
        )
    finally:
        sub.close()
    identity = {"id": created["id"], "name": "fleeting", "engine": "mock"}
    assert (first.event, first.data) == ("session.created", identity)
    assert gone.data == identity
    check_envelope(gone, created["id"], {})
    params = {"sessions": created["id"], "events": "session.created,session.deleted"}
    logged = (await api.request("GET", "/api/events", params=params)).json()["data"]["events"]
    assert [(e["event"], e["data"]) for e in logged] == [
        ("session.created", identity),
        ("session.deleted", identity),
    ]


async def test_a_session_kicked_right_after_each_login_backs_off(api: Api) -> None:
    """Dropped each time right after it came up (a replaced stream, a server that
    refuses the account): the backoff started over at every connect, so such a session
    logged in every second or two for ever, which WhatsApp penalises. It goes on from
    where it was until a connection stays up (`STABLE_AFTER_S`)."""
    sub = api.services.bus.subscribe()
    try:
        created = await api.create_session("flapping")
        await collect_until(sub, created["id"], is_status("ready"))
        reasons = []
        for _ in range(4):
            response = await api.request("POST", "/api/sessions/flapping/mock/disconnect")
            assert response.status_code == 200, response.text
            events = await collect_until(sub, created["id"], is_status("ready"))
            reasons += [
                e.data["reason"]
                for e in status_events(events)
                if e.data["status"] == "initializing"
            ]
    finally:
        sub.close()
    assert reasons == [f"reconnecting (attempt {n})" for n in (1, 2, 3, 4)]
