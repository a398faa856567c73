"""The proof between instances of a cluster, without a cluster: a proof is taken once
(the nonces seen are kept in the cache), refused when the cache cannot be asked, and
each attempt of a forwarded call is signed anew, so the HTTP client's own retry on a
dropped connection is not taken for a replay. The cluster tests
(tests/cluster/test_forwarding.py) run the same across instances sharing Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from openwa.api.forwarding import Forwarder, ForwardingMiddleware, proof
from openwa.cache.base import Cache
from openwa.cache.memory import MemoryCache
from openwa.cache.redis import RedisCache
from tests.fixtures.redis import DEAD_REDIS

SECRET = b"cluster-secret-0123456789"
TARGET = "/api/sessions/ses_1/groups"
CLIENT = "203.0.113.7"  # the original client, as the forwarding instance saw it
PEER = "10.9.9.9"  # the forwarding instance, as this one sees it


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client address the app was given."""
    while (await receive()).get("more_body"):
        pass
    client = scope.get("client")
    body = orjson.dumps({"client": client[0] if client else None})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _owner(seen: Cache) -> AsyncIterator[httpx.AsyncClient]:
    app = ForwardingMiddleware(_echo, secret=SECRET, max_body_bytes=1 << 20, seen=seen)
    transport = httpx.ASGITransport(app=app, client=(PEER, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://owner.test") as http:
        yield http


def _forwarded(body: bytes, *, nonce: str | None = None) -> dict[str, str]:
    at = str(int(time.time()))
    nonce = secrets.token_hex(16) if nonce is None else nonce
    made = proof(
        SECRET, at=at, nonce=nonce, method="POST", target=TARGET, client=CLIENT,
        instance="inst-b", body=body,
    )  # fmt: skip
    return {
        "X-OpenWA-Forwarded-By": "inst-b",
        "X-OpenWA-Forwarded-For": CLIENT,
        "X-OpenWA-Forwarded-At": at,
        "X-OpenWA-Forwarded-Nonce": nonce,
        "X-OpenWA-Forwarded-Proof": made,
    }


async def _seen_as(http: httpx.AsyncClient, headers: dict[str, str], body: bytes) -> str:
    answer = await http.post(TARGET, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    client: str = answer.json()["client"]
    return client


async def test_a_proof_is_taken_once() -> None:
    body = b'{"name": "team"}'
    headers = _forwarded(body)
    async with _owner(MemoryCache()) as http:
        assert await _seen_as(http, headers, body) == CLIENT
        with capture_logs() as logs:
            assert await _seen_as(http, headers, body) == PEER
        # The next call, with a nonce of its own, is taken again.
        assert await _seen_as(http, _forwarded(body), body) == CLIENT
    assert [e["reason"] for e in logs if e["event"] == "forward_proof_refused"] == ["replayed"]


async def test_an_earlier_versions_proof_is_refused_and_said_so() -> None:
    """A `v1=` proof (no nonce), as an instance not yet upgraded signs it."""
    body = b"{}"
    headers = _forwarded(body)
    del headers["X-OpenWA-Forwarded-Nonce"]
    headers["X-OpenWA-Forwarded-Proof"] = "v1=" + "0" * 64
    async with _owner(MemoryCache()) as http:
        with capture_logs() as logs:
            assert await _seen_as(http, headers, body) == PEER
            bad = _forwarded(body, nonce="NOT-A-NONCE")
            assert await _seen_as(http, bad, body) == PEER
    refused = [e["reason"] for e in logs if e["event"] == "forward_proof_refused"]
    assert refused == ["version", "nonce"]


async def test_a_proof_is_refused_while_the_cache_cannot_be_asked() -> None:
    """Redis down: whether the proof was taken before cannot be told, so it is not."""
    body = b"{}"
    cache = RedisCache(DEAD_REDIS)
    try:
        async with _owner(cache) as http:
            with capture_logs() as logs:
                assert await _seen_as(http, _forwarded(body), body) == PEER
    finally:
        await cache.close()
    refused = [e["reason"] for e in logs if e["event"] == "forward_proof_refused"]
    assert refused == ["unchecked"]


async def test_each_attempt_of_a_forwarded_call_is_signed_anew() -> None:
    """The owner drops the first connection after reading the request (as a keep-alive
    connection closed under it would): the HTTP client sends the DELETE again by itself,
    and the second attempt carries a nonce and a valid proof of its own."""
    attempts: list[dict[str, str]] = []

    async def owner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        attempts.append(
            {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        )
        if len(attempts) > 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(owner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    forwarder = Forwarder(SECRET, "inst-b")
    await forwarder.open()
    scope: Scope = {
        "type": "http",
        "method": "DELETE",
        "path": TARGET,
        "raw_path": TARGET.encode(),
        "query_string": b"",
        "headers": [],
        "client": (CLIENT, 5555),
    }
    try:
        status, _, answer = await forwarder._replay(
            Request(scope), f"http://127.0.0.1:{port}{TARGET}", TARGET, b""
        )
    finally:
        await forwarder.close()
        server.close()
        await server.wait_closed()
    assert (status, answer) == (200, b"ok")
    assert len(attempts) == 2
    nonces = {a["x-openwa-forwarded-nonce"] for a in attempts}
    assert len(nonces) == 2
    for attempt in attempts:
        expected = proof(
            SECRET,
            at=attempt["x-openwa-forwarded-at"],
            nonce=attempt["x-openwa-forwarded-nonce"],
            method="DELETE",
            target=TARGET,
            client=CLIENT,
            instance="inst-b",
            body=b"",
        )
        assert attempt["x-openwa-forwarded-proof"] == expected
