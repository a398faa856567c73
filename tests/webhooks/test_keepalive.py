"""A receiver that closes a kept-alive connection just as a delivery is sent on it.

Receivers close idle connections after a few seconds (Node and uvicorn after 5,
gunicorn after 2). A delivery that picks such a connection from the pool as it closes
gets no answer: the receiver never read it. aiohttp sends a POST again only on a new
connection it made itself, so the delivery used to fail (`ServerDisconnectedError`),
log a failed attempt and wait for its retry. The receiver here closes the connection
when its second request arrives, every time: the race, made certain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.webhooks.conftest import Apps
from tests.webhooks.support import (
    all_succeeded,
    inbound,
    read_request,
    ready_session,
    register,
    wait_deliveries,
)


class ClosingReceiver:
    """Answers the first request of each connection (kept alive), and closes the
    connection without answering when a second one arrives on it."""

    def __init__(self) -> None:
        self.answered = 0
        self.dropped = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for number in range(2):
                await read_request(reader)
                if number == 1:
                    self.dropped += 1
                    return
                self.answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def closing() -> AsyncIterator[ClosingReceiver]:
    receiver = ClosingReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_delivery_on_a_connection_closed_as_it_is_sent_goes_at_once(
    apps: Apps, closing: ClosingReceiver
) -> None:
    api = await apps.start()
    session = await ready_session(api)
    hook = await register(api, session["id"], closing.url, events=["message.received"])
    await inbound(api, session["id"], "first")
    await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1))
    await inbound(api, session["id"], "second, on the kept connection")
    done = await wait_deliveries(api, session["id"], hook["id"], all_succeeded(2))
    assert closing.dropped == 1  # the second went out on the kept connection
    assert [d["attempts"] for d in done] == [1, 1], done
    assert [a["error"] for d in done for a in d["log"]] == [None, None], done
