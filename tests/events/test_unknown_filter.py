"""`"*"` takes every event except `message.unknown`, which goes only to who names it: on
the WebSocket, in Server-Sent Events and in the log's pages alike (webhooks: the same
`wanted`, tests/webhooks). No filter at all is `"*"`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.events.sseclient import Frame, SseStream
from tests.events.support import create_ready_session, inbound, page_all_sync
from tests.events.wsclient import collect, open_ws
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]
SENDER = "+1 555 0100 200"


def ids(events: list[dict[str, Any]]) -> list[Any]:
    return [e["data"].get("id") for e in events]


def has(message_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: message_id in ids(events)


def sse_until(server: ServerProcess, message_id: str, **params: Any) -> list[dict[str, Any]]:
    def seen(frames: list[Frame]) -> bool:
        return message_id in [f.json["data"].get("id") for f in frames]

    with SseStream(server.url, ADMIN_KEY, params=params or None) as stream:
        return [f.json for f in stream.events_until(seen, 15, message_id)]


async def test_star_leaves_out_unknown_messages_on_every_stream(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    server.start()
    named = "events=message.unknown,message.received"
    async with (
        open_ws(server, "", ADMIN_KEY) as bare,
        open_ws(server, "events=*", ADMIN_KEY) as star,
        open_ws(server, named, ADMIN_KEY) as asked,
    ):
        with server.client() as client:
            session = create_ready_session(client, "alpha")
            response = client.post(
                f"/api/sessions/{session['id']}/mock/report",
                json={"kind": "unknown", "from": SENDER, "rawType": "futureMessage"},
            )
            assert response.status_code == 202, response.text
            unknown = response.json()["data"]["id"]
            text = inbound(client, session["id"], "after the unknown one")
        for ws in (bare, star):
            got = await collect(ws, has(text), 15, "the text")
            assert unknown not in ids(got)
        got = await collect(asked, has(text), 15, "both messages")
        assert ids(got) == [unknown, text]
        assert got[0]["event"] == "message.unknown"
        assert got[0]["data"]["rawType"] == "futureMessage"

    # The catch-up pages (both messages are in the log now): the same rule.
    with server.client() as client:
        for params in ({}, {"events": "*"}):
            page = page_all_sync(client, **params)
            assert text in ids(page)
            assert unknown not in ids(page)
        named_page = page_all_sync(client, events="message.unknown")
        assert [(e["event"], e["data"]["id"]) for e in named_page] == [("message.unknown", unknown)]

    for params in ({}, {"events": "*"}):
        frames = sse_until(server, text, **params)
        assert unknown not in ids(frames)
    frames = sse_until(server, unknown, events="message.unknown")
    assert [f["event"] for f in frames] == ["message.unknown"]
