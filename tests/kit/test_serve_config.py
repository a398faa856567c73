"""`openwa serve`'s uvicorn keeps idle connections `HTTP_KEEPALIVE_S`, longer than the
proxies in front of it keep theirs (uvicorn's own 5 s made them send requests on
connections it was closing: a 502 for a request never read)."""

from __future__ import annotations

import asyncio
from typing import Any

from openwa.cli import server_config
from openwa.config import Settings
from tests.fixtures.server import free_port
from tests.kit.test_serve_gc import _Watched


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_idle_connections_outlive_a_load_balancers_by_default() -> None:
    settings = Settings(_env_file=None)
    assert settings.http_keepalive_s > 60  # AWS's and most load balancers' idle time
    assert server_config(settings, _ok).timeout_keep_alive == settings.http_keepalive_s


async def test_the_server_closes_a_connection_idle_for_the_setting() -> None:
    settings = Settings(_env_file=None, host="127.0.0.1", port=free_port(), http_keepalive_s=1)
    config = server_config(settings, _ok)
    config.lifespan, config.log_config = "off", None
    server = _Watched(config)
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.up.wait(), 30)  # only against a hang
        reader, writer = await asyncio.open_connection(settings.host, settings.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 204")
        # Kept alive, then closed by the server once idle: the end of the stream.
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
    finally:
        server.should_exit = True
        await serving
