"""The tests' server fixture starts the server it was asked for, even when another
test's server took the port that was picked for it (a race across the test workers:
a free port is picked, then bound by the server a moment later). A webhook receiver that
answers everything with 200 "ok" on that port once passed for the server, and the test
then talked to the receiver."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fixtures.server import ServerProcess


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port held by something that is not OpenWA and answers 200 "ok"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_a_port_taken_meanwhile_is_left_for_another(
    server_factory: Callable[..., ServerProcess], squatter: int
) -> None:
    server = server_factory()
    server.port = squatter  # as if another test had bound it first
    server.start()
    assert server.port != squatter
    with server.client() as client:
        assert client.get("/api/sessions").json()["success"] is True
