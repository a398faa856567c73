"""Live streams on the real server: a deleted key loses its open WebSocket and SSE
streams at once, and streams are capped per key and per instance (issue 11, 4 and 5)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.api.checks import assert_error
from tests.events.sseclient import SseStream
from tests.events.support import create_ready_session, inbound, wait_sync
from tests.events.wsclient import close_code, collect, open_ws
from tests.fixtures.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]


def _new_key(client: httpx.Client, role: str, sessions: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"streams {role}", "role": role}
    if sessions is not None:
        body["sessions"] = sessions
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _sees(ws: Any, message_id: str, what: str) -> None:
    await collect(ws, lambda got: any(e["data"].get("id") == message_id for e in got), 10, what)


def _ends(stream: SseStream, timeout: float = 10.0) -> bool:
    """Read `stream` to its end in a thread; whether the server ended it within `timeout`
    (the read timeout of the client is longer than the server's heartbeat)."""
    finished = threading.Event()

    def read() -> None:
        try:
            for _ in stream.frames():
                pass
        except httpx.HTTPError:
            return
        finished.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return finished.wait(timeout)


async def test_deleting_a_key_ends_its_websocket_and_sse_streams(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        other = _new_key(client, "viewer")
        alpha = create_ready_session(client, "alpha")
        viewer = _new_key(client, "viewer", sessions=[alpha["id"]])

    async with open_ws(server, key=viewer["key"]) as ws, open_ws(server, key=other["key"]) as kept:
        with SseStream(server.url, viewer["key"], params={"events": "message.received"}) as sse:
            assert sse.response.status_code == 200
            # Both streams are live: they see an event.
            with server.client() as client:
                message_id = inbound(client, alpha["id"], "before the deletion")
            await _sees(ws, message_id, "the event on the socket")
            sse.events_until(
                lambda frames: any(f.json["data"].get("id") == message_id for f in frames),
                10,
                "the event on the SSE stream",
            )

            with server.client() as client:
                deleted = client.delete(f"/api/keys/{viewer['id']}")
                assert deleted.status_code == 200, deleted.text
            assert await close_code(ws) == 1008
            assert _ends(sse), "the SSE stream of the deleted key did not end"

        # REST refuses the key, a new stream too; another key's socket is untouched.
        with server.client(viewer["key"]) as client:
            assert_error(client.get("/api/sessions"), 401, "UNAUTHORIZED")
            assert_error(client.get("/api/events/stream"), 401, "UNAUTHORIZED")
        with server.client() as client:
            message_id = inbound(client, alpha["id"], "after the deletion")
        await _sees(kept, message_id, "the event on the other key's socket")


async def test_streams_are_capped_per_key_and_per_instance(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(STREAMS_PER_KEY="2", MAX_STREAMS="3")
    server.start()
    with server.client() as client:
        first = _new_key(client, "viewer")["key"]
        second = _new_key(client, "viewer")["key"]

    def refused(key: str) -> dict[str, Any]:
        with server.client(key) as client:
            response = client.get("/api/events/stream")
        error = assert_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) > 0
        return error

    async with open_ws(server, key=first) as ws:
        sse = SseStream(server.url, first)
        try:
            assert sse.response.status_code == 200
            # The key holds two streams: a third, SSE or WebSocket, is refused.
            assert refused(first)["details"]["scope"] == "key"
            async with open_ws(server, key=first) as over:
                assert await close_code(over) == 1013
            # One more for another key fills the instance.
            with SseStream(server.url, second) as third:
                assert third.response.status_code == 200
                assert refused(second)["details"]["scope"] == "instance"
                async with open_ws(server, key=second) as over:
                    assert await close_code(over) == 1013
        finally:
            sse.close()
        # A closed stream frees its slot (once the server has seen it go).

        def opens(key: str) -> int:
            with SseStream(server.url, key) as stream:
                return stream.response.status_code

        wait_sync(lambda: opens(first), lambda status: status == 200, 10, "a freed slot")
        assert ws.state.name == "OPEN"
