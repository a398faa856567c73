"""A client that goes away mid-upload is not a server error: the real server logs it as
a disconnect (info), never as `unhandled_error` with a traceback, and leaves nothing
staged."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import orjson

from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess


def test_an_upload_cut_short_is_logged_as_a_disconnect(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        created = client.post("/api/sessions", json={"name": "cut", "engine": "mock"})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 15
        while client.get("/api/sessions/cut").json()["data"]["status"] != "ready":
            assert time.monotonic() < deadline, "the session did not get ready"
            time.sleep(0.05)

    # Half of a JSON body, then the connection is closed: on the media route, which
    # reads its body itself, and on a route whose body FastAPI reads.
    cut = {
        "media": {
            "chatId": "+6281234567890",
            "type": "document",
            "media": {"base64": "QUJD" * 50_000},
        },
        "text": {"chatId": "+6281234567890", "text": "x" * 60_000},
    }
    for kind, payload in cut.items():
        body = orjson.dumps(payload)
        head = (
            f"POST /api/sessions/cut/messages/{kind} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nX-API-Key: {ADMIN_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + body[: len(body) // 2])
    with server.client() as client:  # the server goes on answering
        assert client.get("/api/sessions/cut").status_code == 200
        deadline = time.monotonic() + 10
        while server.log().count("client_disconnected") < len(cut):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
    assert server.stop(signal.SIGTERM) == 0
    log = server.log()
    assert "unhandled_error" not in log, log
    assert "Traceback" not in log, log
    staged = server.data_dir / "tmp"
    assert not staged.exists() or not any(staged.iterdir())
