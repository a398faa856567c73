"""Helpers shared by the event tests (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from tests.fixtures.app import Api

ENVELOPE_FIELDS = {"id", "event", "sessionId", "timestamp", "data", "engine", "metadata"}


def check_envelope(event: dict[str, Any], *, logged: bool = True) -> None:
    """The contract's envelope (plus `cursor` in the log and SSE)."""
    expected = ENVELOPE_FIELDS | ({"cursor"} if logged else set())
    assert set(event) == expected, event
    assert isinstance(event["id"], str), event
    assert event["id"], event
    assert isinstance(event["data"], dict), event
    assert isinstance(event["metadata"], dict), event
    assert all(isinstance(v, str) for v in event["metadata"].values()), event
    stamp = event["timestamp"]
    assert isinstance(stamp, str), event
    assert stamp.endswith("Z"), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    if logged:
        assert isinstance(event["cursor"], int), event
        assert event["cursor"] > 0, event


def check_log_order(events: list[dict[str, Any]]) -> None:
    """Strictly increasing cursors, each event id once."""
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(cursors), cursors
    assert len(set(cursors)) == len(cursors), cursors
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids), "an event id appears twice"


async def page_all(
    api: Api, key: str | None = None, *, limit: int = 1000, **params: Any
) -> list[dict[str, Any]]:
    """Every event the key sees from cursor 0 (or `after`), following `nextCursor`."""
    after = int(params.pop("after", 0))
    found: list[dict[str, Any]] = []
    for _ in range(10_000):
        kwargs: dict[str, Any] = {"params": {"after": after, "limit": limit, **params}}
        if key is not None:
            kwargs["key"] = key
        response = await api.request("GET", "/api/events", **kwargs)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        found.extend(data["events"])
        if not data["events"]:
            assert data["nextCursor"] == after, data
            return found
        assert data["nextCursor"] == data["events"][-1]["cursor"], data
        after = data["nextCursor"]
    raise AssertionError("the event log never ended")


def page_all_sync(
    client: httpx.Client, *, limit: int = 1000, **params: Any
) -> list[dict[str, Any]]:
    """`page_all` for a real server's client."""
    after = int(params.pop("after", 0))
    found: list[dict[str, Any]] = []
    for _ in range(10_000):
        response = client.get("/api/events", params={"after": after, "limit": limit, **params})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        found.extend(data["events"])
        if not data["events"]:
            assert data["nextCursor"] == after, data
            return found
        assert data["nextCursor"] == data["events"][-1]["cursor"], data
        after = data["nextCursor"]
    raise AssertionError("the event log never ended")


def wait_sync(
    fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {str(value)[:2000]}")


def create_ready_session(
    client: httpx.Client, name: str, timeout: float = 15.0, **body: Any
) -> dict[str, Any]:
    """Create a mock session on a real server and wait until it is `ready`."""
    response = client.post("/api/sessions", json={"name": name, "engine": "mock", **body})
    assert response.status_code == 201, response.text
    session_id = response.json()["data"]["id"]

    def fetch() -> dict[str, Any]:
        got = client.get(f"/api/sessions/{session_id}")
        assert got.status_code == 200, got.text
        data: dict[str, Any] = got.json()["data"]
        return data

    session: dict[str, Any] = wait_sync(
        fetch, lambda s: s["status"] == "ready", timeout, f"{name} ready"
    )
    return session


def inbound(client: httpx.Client, session: str, text: str, sender: str = "+1 555 0100 200") -> str:
    response = client.post(
        f"/api/sessions/{session}/mock/inbound", json={"from": sender, "text": text}
    )
    assert response.status_code == 202, response.text
    message_id: str = response.json()["data"]["id"]
    return message_id
