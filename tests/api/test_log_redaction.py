"""Keys never reach the logs: the real server (`openwa serve`), its log read back.

The probe found the WebSocket's access line logging `/ws?apiKey=owa_...` in full;
browsers cannot set headers on a WebSocket, so the key in the query is the normal way
in, and every such line must show it masked.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import websockets

from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess


def test_a_websocket_connection_logs_no_key(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        response = client.post("/api/keys", json={"name": "browser", "role": "viewer"})
        assert response.status_code == 201, response.text
        key = response.json()["data"]["key"]
        # A key given where it does not belong, as a query parameter of a REST call.
        assert client.get("/api/sessions", params={"apiKey": key}).status_code == 200

    async def connect_with(query_key: str) -> None:
        url = f"ws://127.0.0.1:{server.port}/ws?apiKey={query_key}&events=*"
        async with websockets.connect(url) as ws:
            await ws.ping()

    asyncio.run(connect_with(key))
    asyncio.run(connect_with(ADMIN_KEY))
    assert server.stop(signal.SIGTERM) == 0
    log = server.log()
    lines = [line for line in log.splitlines() if "WebSocket" in line and "/ws" in line]
    assert lines, f"no WebSocket line was logged:\n{log}"
    assert all("apiKey=***" in line for line in lines), lines
    for secret in (key, key.removeprefix("owa_"), ADMIN_KEY):
        assert secret not in log
