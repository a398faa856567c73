"""WebSocket clients for the event tests: the `websockets` package, and a raw one that never reads."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.fixtures.server import ServerProcess


async def close_code(ws: ClientConnection, timeout: float = 10.0) -> int:
    """The code the server closes `ws` with (events before it are skipped)."""

    async def read_all() -> None:
        while True:
            await ws.recv()

    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(read_all(), timeout)
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


def ws_url(server: ServerProcess, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws" + (f"?{query}" if query else "")


def open_ws(server: ServerProcess, query: str = "", key: str | None = None) -> Any:
    """`async with open_ws(...) as ws`; the key (if any) in the X-API-Key header."""
    headers = {"X-API-Key": key} if key else None
    return connect(
        ws_url(server, query),
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
        close_timeout=2,
    )


async def collect(
    ws: ClientConnection,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    what: str,
    into: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Read envelopes until `done(all read so far)`."""
    got = into if into is not None else []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; got {[_brief(e) for e in got]}")
        try:
            frame = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            continue
        assert isinstance(frame, str), "events come as text frames"
        got.append(orjson.loads(frame))
    return got


async def drain(ws: ClientConnection, quiet_s: float = 0.7) -> list[dict[str, Any]]:
    """Whatever arrives until nothing has for `quiet_s`."""
    got: list[dict[str, Any]] = []
    while True:
        try:
            frame = await asyncio.wait_for(ws.recv(), quiet_s)
        except TimeoutError:
            return got
        got.append(orjson.loads(frame))


def _brief(event: dict[str, Any]) -> tuple[Any, ...]:
    data = event.get("data") or {}
    return (event.get("event"), event.get("sessionId"), data.get("id"), data.get("status"))


class RawWebSocket:
    """A client that completes the handshake and then does not read at all.

    Its receive buffer is made small before connecting, so unread frames back up
    to the server instead of piling up in this process.
    """

    def __init__(self, server: ServerProcess, key: str, query: str = "") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", server.port))
        nonce = base64.b64encode(os.urandom(16)).decode()
        path = "/ws" + (f"?{query}" if query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
            f"X-API-Key: {key}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            byte = self.sock.recv(1)
            assert byte, f"connection closed during the handshake: {head!r}"
            head += byte
        self.status_line = head.split(b"\r\n", 1)[0].decode()
        self._buffer = b""

    def read_until_close(self, timeout: float) -> tuple[list[dict[str, Any]], int | None]:
        """Read everything now: the text frames, and the close code (None: no close frame)."""
        deadline = time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            frame = self._next_frame(deadline)
            if frame is None:
                return events, None
            opcode, payload = frame
            if opcode == 0x1:
                events.append(orjson.loads(payload))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                return events, code
        return events, None

    def _next_frame(self, deadline: float) -> tuple[int, bytes] | None:
        header = self._take(2, deadline)
        if header is None:
            return None
        opcode, length = header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            raw = self._take(2, deadline)
            if raw is None:
                return None
            length = int.from_bytes(raw, "big")
        elif length == 127:
            raw = self._take(8, deadline)
            if raw is None:
                return None
            length = int.from_bytes(raw, "big")
        payload = self._take(length, deadline)  # server frames are not masked
        if payload is None:
            return None
        return opcode, payload

    def _take(self, size: int, deadline: float) -> bytes | None:
        while len(self._buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except (TimeoutError, OSError):
                return None
            if not chunk:
                return None
            self._buffer += chunk
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def close(self) -> None:
        self.sock.close()
