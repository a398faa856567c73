"""`GET /api/events/stream` on the real server: SSE frames, resuming by Last-Event-ID."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.events.sseclient import Frame, SseStream
from tests.events.support import (
    check_envelope,
    check_log_order,
    create_ready_session,
    inbound,
    page_all_sync,
    wait_sync,
)
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]


def _check_frame(frame: Frame) -> dict[str, Any]:
    """`id:` is the cursor, `event:` the event name, `data:` the logged envelope as JSON."""
    assert frame.id is not None, frame
    assert frame.id.isdigit(), frame
    event = frame.json
    check_envelope(event)
    assert event["cursor"] == int(frame.id), frame
    assert frame.event == event["event"], frame
    return event


def _log_has(client: httpx.Client, ids: set[str], **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = wait_sync(
        lambda: page_all_sync(client, **params),
        lambda events: ids <= {e["data"].get("id") for e in events},
        15,
        "the events in the log",
    )
    return events


def _count(n: int) -> Callable[[list[Frame]], bool]:
    return lambda frames: len(frames) >= n


def test_sse_resumes_after_last_event_id_missing_none_and_repeating_none(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        alpha = create_ready_session(client, "alpha", config={"metadata": {"k": "v"}})
        first = {inbound(client, alpha["id"], f"first {n}") for n in range(4)}
        log = _log_has(client, first)
    assert len(log) > 6

    # Read part of the log, then go away.
    with SseStream(server.url, ADMIN_KEY) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        part = stream.events_until(_count(5), 15, "the first five events")
    seen = [_check_frame(f) for f in part]
    assert [e["id"] for e in seen] == [e["id"] for e in log[:5]]
    assert seen == log[:5]

    # More happens while we are away.
    with server.client() as client:
        second = {inbound(client, alpha["id"], f"second {n}") for n in range(5)}
        log = _log_has(client, first | second)

    # Back with Last-Event-ID: the rest, then live events as they happen.
    with SseStream(server.url, ADMIN_KEY, last_event_id=part[-1].id) as stream:
        rest = stream.events_until(_count(len(log) - 5), 15, "the rest of the log")
        with server.client() as client:
            live = {inbound(client, alpha["id"], f"live {n}") for n in range(3)}
        tail = stream.events_until(
            lambda frames: live <= {f.json["data"].get("id") for f in frames},
            15,
            "the live events",
        )
    seen += [_check_frame(f) for f in rest + tail]
    check_log_order(seen)

    with server.client() as client:
        final = page_all_sync(client)
    assert [e["id"] for e in seen] == [e["id"] for e in final], "missed or repeated events"
    assert seen == final
    assert {e["data"].get("id") for e in seen} >= first | second | live


def test_sse_after_parameter_filters_and_scope(server_factory: ServerFactory) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        alpha = create_ready_session(client, "alpha")
        beta = create_ready_session(client, "beta")
        ids = {inbound(client, alpha["id"], "to alpha"), inbound(client, beta["id"], "to beta")}
        log = _log_has(client, ids)
        response = client.post(
            "/api/keys", json={"name": "scoped", "role": "viewer", "sessions": [alpha["id"]]}
        )
        assert response.status_code == 201, response.text
        scoped: str = response.json()["data"]["key"]

    def read(key: str, n: int, **kwargs: Any) -> list[dict[str, Any]]:
        with SseStream(server.url, key, **kwargs) as stream:
            return [_check_frame(f) for f in stream.events_until(_count(n), 15, str(kwargs))]

    middle = log[len(log) // 2]["cursor"]
    after = [e for e in log if e["cursor"] > middle]
    assert read(ADMIN_KEY, len(after), params={"after": middle}) == after
    # Last-Event-ID wins over `after` (it is what a browser sends when it reconnects).
    assert read(ADMIN_KEY, len(after), params={"after": 0}, last_event_id=str(middle)) == after
    # By the id of the last event handled (what a WebSocket frame carries).
    middle_id = log[len(log) // 2]["id"]
    assert read(ADMIN_KEY, len(after), params={"afterId": middle_id}) == after

    only_b = [e for e in log if e["sessionId"] == beta["id"]]
    assert read(ADMIN_KEY, len(only_b), params={"sessions": "beta"}) == only_b
    received = [e for e in log if e["event"] == "message.received"]
    assert read(ADMIN_KEY, 2, params={"events": "message.received"}) == received

    # A key scoped to alpha: only alpha's events, even when it asks for beta. Then an
    # event of beta and one of alpha happen: it is woken by beta's but shows only alpha's.
    only_a = [e for e in log if e["sessionId"] == alpha["id"]]
    assert read(scoped, len(only_a)) == only_a
    with SseStream(server.url, scoped, params={"sessions": f"alpha,{beta['id']}"}) as stream:
        head = stream.events_until(_count(len(only_a)), 15, "alpha's events")
        with server.client() as client:
            inbound(client, beta["id"], "not for the scoped key")
            later = inbound(client, alpha["id"], "for the scoped key")
        tail = stream.events_until(
            lambda frames: later in {f.json["data"].get("id") for f in frames},
            15,
            "alpha's next event",
        )
    got = [_check_frame(f) for f in head + tail]
    assert all(e["sessionId"] == alpha["id"] for e in got), got
    check_log_order(got)


def test_sse_needs_a_key(server_factory: ServerFactory) -> None:
    server = server_factory()
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/api/events/stream")
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        response = client.get("/api/events/stream", headers={"X-API-Key": "wrong-key-01234567"})
        assert response.status_code == 401, response.text
