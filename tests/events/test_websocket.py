"""`GET /ws` on the real server: authentication, filters, order, and slow clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.support import log_events
from tests.events.support import (
    check_envelope,
    create_ready_session,
    inbound,
    page_all_sync,
    wait_sync,
)
from tests.events.wsclient import RawWebSocket, close_code, collect, drain, open_ws, ws_url
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]


def _new_key(client: httpx.Client, role: str, sessions: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": f"ws {role}", "role": role}
    if sessions is not None:
        body["sessions"] = sessions
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    key: str = response.json()["data"]["key"]
    return key


def _has(event: str, message_id: str, status: str | None = None) -> Callable[[Any], bool]:
    def check(events: list[dict[str, Any]]) -> bool:
        return any(
            e["event"] == event
            and e["data"].get("id") == message_id
            and (status is None or e["data"].get("status") == status)
            for e in events
        )

    return check


def _all(*checks: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda events: all(check(events) for check in checks)


async def _refused(server: ServerProcess, query: str = "", key: str | None = None) -> None:
    """The server refuses the socket: at the handshake (401/403), or closes it with 1008."""
    status: int | None = None
    try:
        async with open_ws(server, query, key) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008, closed.value
            return
    except InvalidStatus as exc:
        status = exc.response.status_code
    assert status in (401, 403), status


async def test_ws_authenticates_by_header_query_or_bearer_and_refuses_bad_keys(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        alpha = create_ready_session(client, "alpha")
        viewer = _new_key(client, "viewer")

    async def sees_an_event(ws: Any) -> None:
        with server.client() as client:
            message_id = inbound(client, alpha["id"], "knock knock")
        got = await collect(ws, _has("message.received", message_id), 10, "the inbound message")
        for event in got:
            check_envelope(event, logged=False)

    async with open_ws(server, key=ADMIN_KEY) as ws:
        await sees_an_event(ws)
    async with open_ws(server, f"apiKey={viewer}") as ws:
        await sees_an_event(ws)
    async with open_ws(server, f"apiKey={ADMIN_KEY}&sessions=alpha") as ws:
        await sees_an_event(ws)

    bearer = {"Authorization": f"Bearer {viewer}"}
    async with connect(
        f"ws://127.0.0.1:{server.port}/ws", additional_headers=bearer, proxy=None
    ) as ws:
        await sees_an_event(ws)

    await _refused(server, key="wrong-key-0123456789abcdef")
    await _refused(server, "apiKey=wrong-key-0123456789abcdef")
    await _refused(server)
    await _refused(server, "apiKey=")


async def test_ws_refuses_a_nul_in_its_query(server_factory: ServerFactory) -> None:
    # PostgreSQL refuses NUL in text: a NUL in `sessions=` reached a session lookup.
    server = server_factory()
    server.start()
    for query in ("sessions=a%00b", "events=message.received%00", "x=%00"):
        async with open_ws(server, query, key=ADMIN_KEY) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "VALIDATION_ERROR")
    assert "Traceback" not in server.log()


async def test_ws_takes_no_large_or_compressed_client_messages(
    server_factory: ServerFactory,
) -> None:
    """Clients have nothing to send: a message over 4 KiB closes the socket (1009)
    rather than be read (up to 16 MiB each, by default), and no compression is agreed,
    so no small frame inflates into a large one on the server."""
    server = server_factory()
    server.start()
    async with open_ws(server, key=ADMIN_KEY) as ws:
        assert ws.protocol.extensions == []  # offered by the client, not agreed
        await ws.send("x" * 65536)
        assert await close_code(ws) == 1009
    assert "Traceback" not in server.log()


async def test_ws_lets_go_of_what_a_client_sends_and_keeps_serving(
    server_factory: ServerFactory,
) -> None:
    """Clients have nothing to send, but some send anyway (a keep-alive of their own, in
    text or binary): the socket goes on. A binary frame once ended it without a close
    frame (read as text, it failed the reader)."""
    server = server_factory()
    server.start()
    with server.client() as client:
        session = create_ready_session(client, "alpha")
    async with open_ws(server, key=ADMIN_KEY) as ws:
        await ws.send(b"\x00\x01binary ping")
        await ws.send("text ping")
        await ws.ping()
        with server.client() as client:
            sent = inbound(client, session["id"], "still here")
        await collect(ws, _has("message.received", sent), 15, "the event after the frames")
    assert "Traceback" not in server.log()


async def test_ws_filters_scope_and_the_order_of_a_conversation(
    server_factory: ServerFactory,
) -> None:
    """Every socket reads until a last message it must see (no quiet-period guesswork):
    the bus hands each socket the log's events in order, so once a socket has its last
    one it has everything before it. Only the socket that must see nothing is drained."""
    server = server_factory(MOCK_ACK_DELAY_MS="50")
    server.start()
    with server.client() as client:
        alpha = create_ready_session(client, "alpha", config={"metadata": {"side": "a"}})
        beta = create_ready_session(client, "beta")
        scoped = _new_key(client, "viewer", sessions=[alpha["id"]])
    a_id, b_id = alpha["id"], beta["id"]

    async with (
        open_ws(server, key=ADMIN_KEY) as all_ws,
        open_ws(server, f"sessions=alpha&apiKey={ADMIN_KEY}") as a_ws,
        open_ws(server, f"sessions={b_id}", ADMIN_KEY) as b_ws,
        open_ws(server, "events=message.received", ADMIN_KEY) as received_ws,
        open_ws(server, "sessions=beta&events=message.received,session.status", ADMIN_KEY) as bs_ws,
        open_ws(server, key=scoped) as scoped_ws,
        open_ws(server, "sessions=beta", scoped) as scoped_b_ws,
    ):
        with server.client() as client:
            # Every socket is subscribed now: what the log gets after this, each sees.
            before = page_all_sync(client)
            start = before[-1]["cursor"] if before else 0
            to_a = inbound(client, a_id, "to alpha")
            to_b = inbound(client, b_id, "to beta")
            response = client.post(
                f"/api/sessions/{a_id}/messages/text",
                json={"chatId": beta["phoneNumber"], "text": "alpha says hi"},
            )
            assert response.status_code == 202, response.text
            a_to_b: str = response.json()["data"]["id"]

        conversation = await collect(
            all_ws,
            _all(
                _has("message.received", to_a),
                _has("message.received", to_b),
                _has("message.received", a_to_b),
                _has("message.ack", a_to_b, "read"),
            ),
            15,
            "the conversation on the unfiltered socket",
        )
        # The last messages, after the whole conversation in the log.
        with server.client() as client:
            last_a = inbound(client, a_id, "last to alpha")
            last_b = inbound(client, b_id, "last to beta")
        both_last = _all(_has("message.received", last_a), _has("message.received", last_b))
        everything = await collect(all_ws, both_last, 10, "the last messages", conversation)
        a_seen = await collect(a_ws, _has("message.received", last_a), 10, "A's socket")
        b_seen = await collect(b_ws, _has("message.received", last_b), 10, "B's socket")
        received = await collect(received_ws, both_last, 10, "the received socket")
        bs_seen = await collect(bs_ws, _has("message.received", last_b), 10, "B's filtered socket")
        scoped_seen = await collect(scoped_ws, _has("message.received", last_a), 10, "scoped")
        scoped_b_seen = await drain(scoped_b_ws)

    # What the log got since the sockets were subscribed (a socket may also have been
    # handed an event committed before, by a pump running a little behind).
    with server.client() as client:
        log = page_all_sync(client, after=start)
    fresh = {e["id"] for e in log}
    everything, a_seen, b_seen, received, bs_seen, scoped_seen = (
        [e for e in seen if e["id"] in fresh]
        for seen in (everything, a_seen, b_seen, received, bs_seen, scoped_seen)
    )

    for event in everything:
        check_envelope(event, logged=False)
    assert {e["sessionId"] for e in everything} == {a_id, b_id}

    # The unfiltered socket shows what the log shows, in the log's order.
    assert everything[-1]["data"]["id"] in (last_a, last_b)
    log_ids = [e["id"] for e in log]
    assert [e["id"] for e in everything] == log_ids[: log_ids.index(everything[-1]["id"]) + 1]
    by_id = {e["id"]: e for e in log}
    for event in everything:
        logged = dict(by_id[event["id"]])
        logged.pop("cursor")
        assert event == logged

    def of(session_id: str) -> list[str]:
        return [e["id"] for e in everything if e["sessionId"] == session_id]

    # A's socket: only A, and its message goes sent -> delivered -> read, in that order.
    assert all(e["sessionId"] == a_id for e in a_seen), a_seen
    assert all(e["metadata"] == {"side": "a"} for e in a_seen)
    a_message = [
        (e["event"], e["data"].get("status")) for e in a_seen if e["data"].get("id") == a_to_b
    ]
    assert a_message == [
        ("message.sent", "sent"),
        ("message.ack", "delivered"),
        ("message.ack", "read"),
    ], a_message
    assert _has("message.received", to_a)(a_seen)
    assert [e["id"] for e in a_seen] == of(a_id)

    # B's socket: only B, with A's message received once. (Whether B's `message.received`
    # comes before or after A's `message.sent` in the log is not promised: the mock, like
    # WhatsApp, hands the message to B while A's send is still returning, and each
    # session's events are ordered only among themselves.)
    assert all(e["sessionId"] == b_id for e in b_seen), b_seen
    b_message = [e["event"] for e in b_seen if e["data"].get("id") == a_to_b]
    assert b_message == ["message.received"], b_seen
    assert b_seen[[e["data"].get("id") for e in b_seen].index(a_to_b)]["data"]["fromMe"] is False
    assert [e["id"] for e in b_seen] == of(b_id)

    # Event-name filters, alone and with a session filter.
    assert [e["id"] for e in received] == [
        e["id"] for e in everything if e["event"] == "message.received"
    ]
    assert {e["data"]["id"] for e in received} == {to_a, to_b, a_to_b, last_a, last_b}
    assert [e["id"] for e in bs_seen] == [
        e["id"]
        for e in everything
        if e["sessionId"] == b_id and e["event"] in ("message.received", "session.status")
    ]
    assert bs_seen

    # A key scoped to A sees A's events only, and nothing when it asks for B.
    assert [e["id"] for e in scoped_seen] == of(a_id)
    assert scoped_b_seen == []


def _flood_size(event_bytes: int) -> int:
    """Events of `event_bytes` making about 9 MiB: more than loopback's socket buffers
    hold here (measured: about 3 MiB), as a multiple of 25 (the batch size below)."""
    count = 9 * 1024 * 1024 // event_bytes
    return (count + 24) // 25 * 25


async def test_a_client_that_stops_reading_under_a_flood_is_closed_with_1008(
    server_factory: ServerFactory,
) -> None:
    """Megabytes of events to a client that reads nothing: once the network buffers are
    full, the server must stop queueing for it and close it with 1008."""
    server = server_factory(WS_MAX_QUEUE="5")
    server.start()
    with server.client() as client:
        alpha = create_ready_session(client, "alpha")
        logged = page_all_sync(client)
        last_cursor = logged[-1]["cursor"] if logged else 0

    slow = RawWebSocket(server, ADMIN_KEY)
    count = _flood_size(60_000)
    try:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30
        ) as http:
            for start in range(0, count, 25):  # count is a multiple of 25

                async def one(n: int) -> None:
                    response = await http.post(
                        f"/api/sessions/{alpha['id']}/mock/inbound",
                        json={"from": "+1 555 0100 200", "text": f"{n} " + "y" * 60_000},
                    )
                    assert response.status_code == 202, response.text

                await asyncio.gather(*(one(n) for n in range(start, start + 25)))
        with server.client() as client:
            # Cursors are dense: an event at `last_cursor + count` means the flood is logged
            # (one small read a poll, where paging megabytes would slow the server).
            wait_sync(
                lambda: client.get(
                    "/api/events", params={"after": last_cursor + count - 1, "limit": 1}
                ).json()["data"]["events"],
                bool,
                30,
                "the flood in the log",
            )
        # Reading before the server gave up on the client would let it catch up.
        wait_sync(
            lambda: [e["event"] for e in log_events(server.log())],
            lambda names: "ws_closed_behind" in names,
            30,
            "the server to close the slow client",
        )
        events, code = slow.read_until_close(timeout=20)
    finally:
        slow.close()
    assert code == 1008, f"no 1008 close; read {len(events)} events, close code {code}"
    assert len(events) < count
    # The server is fine afterwards: a new client gets new events. One that connects
    # while the pump still hands the flood's tail to the bus may be more than
    # WS_MAX_QUEUE (5) behind at once and closed with 1008 too; as the contract says,
    # it reconnects (the tail is finite, so a later client is not behind).
    deadline = time.monotonic() + 30
    while True:
        try:
            async with open_ws(server, key=ADMIN_KEY) as ws:
                with server.client() as client:
                    message_id = inbound(client, alpha["id"], "after the flood")
                await collect(ws, _has("message.received", message_id), 10, "an event after it")
            return
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1008 or time.monotonic() > deadline:
                raise


async def test_ws_takes_its_key_as_a_subprotocol_and_answers_with_openwa_alone(
    server_factory: ServerFactory,
) -> None:
    """Browsers cannot set headers on a WebSocket: the key may come as a subprotocol
    (`openwa.key.<key>`), in no URL (`?apiKey=` ends in a balancer's access log). The
    server picks `openwa`, never echoing the key."""
    server = server_factory()
    server.start()
    with server.client() as client:
        session = create_ready_session(client, "alpha")
    protocols: Any = ["openwa", f"openwa.key.{ADMIN_KEY}"]
    async with connect(ws_url(server), subprotocols=protocols, proxy=None, open_timeout=10) as ws:
        assert ws.subprotocol == "openwa"
        with server.client() as client:
            sent = inbound(client, session["id"], "by subprotocol")
        await collect(ws, _has("message.received", sent), 15, "the event")
    bad: Any = ["openwa", "openwa.key.owa_not_a_key"]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server), subprotocols=bad, proxy=None, open_timeout=10):
            pass
    assert refused.value.response.status_code in (401, 403)
    assert ADMIN_KEY not in server.log()
