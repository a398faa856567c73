"""Two mock sessions talk; each side's webhook and WebSocket see the story in order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from aiohttp import web
from standardwebhooks import Webhook

from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import free_port

pytestmark = pytest.mark.e2e


class Receiver:
    """A real webhook receiver on loopback that verifies and keeps every event."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secrets: dict[str, str] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        event = Webhook(self.secrets[name]).verify(body, dict(request.headers))
        self.events.setdefault(name, []).append(event)
        return web.Response(status=204)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


def _story(events: list[dict[str, Any]], message_id: str) -> list[str]:
    """The event names and ack statuses about one message, in arrival order."""
    story = []
    for event in events:
        if event["data"].get("id") != message_id:
            continue
        status = event["data"].get("status")
        story.append(
            f"{event['event']}:{status}" if event["event"] == "message.ack" else event["event"]
        )
    return story


async def _collect(url: str, into: list[dict[str, Any]]) -> None:
    async with websockets.connect(url) as socket:
        async for frame in socket:
            into.append(json.loads(frame))


async def test_exchange_seen_in_order_by_webhooks_and_sockets(server_factory: Any) -> None:
    server = server_factory(WEBHOOK_ALLOW_PRIVATE="true", MOCK_ACK_DELAY_MS="100")
    server.start()
    receiver = Receiver()
    runner = await receiver.start()
    headers = {"X-API-Key": ADMIN_KEY}
    sockets: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    tasks: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
            phones = {}
            for name in ("a", "b"):
                response = await http.post("/api/sessions", json={"name": name})
                assert response.status_code == 201
            for name in ("a", "b"):
                for _ in range(200):
                    data = (await http.get(f"/api/sessions/{name}")).json()["data"]
                    if data["status"] == "ready":
                        phones[name] = data["phoneNumber"]
                        break
                    await asyncio.sleep(0.05)
                hook = {"url": f"http://127.0.0.1:{receiver.port}/{name}"}
                response = await http.post(f"/api/sessions/{name}/webhooks", json=hook)
                assert response.status_code == 201
                receiver.secrets[name] = response.json()["data"]["secret"]
                ws_url = f"ws://127.0.0.1:{server.port}/ws?sessions={name}&apiKey={ADMIN_KEY}"
                tasks.append(asyncio.create_task(_collect(ws_url, sockets[name])))
            await asyncio.sleep(0.5)  # the sockets are subscribed

            sent = {}
            for sender, recipient in (("a", "b"), ("b", "a")):
                body = {"chatId": "+" + phones[recipient], "text": f"hello from {sender}"}
                response = await http.post(f"/api/sessions/{sender}/messages/text", json=body)
                assert response.status_code == 202
                sent[sender] = response.json()["data"]["id"]

            expected_sender = ["message.sent", "message.ack:delivered", "message.ack:read"]
            for _ in range(200):
                done = all(
                    _story(feed.get(s, []), sent[s]) == expected_sender
                    and _story(feed.get(r, []), sent[s]) == ["message.received"]
                    for feed in (receiver.events, sockets)
                    for s, r in (("a", "b"), ("b", "a"))
                )
                if done:
                    break
                await asyncio.sleep(0.05)
            for feed in (receiver.events, sockets):
                for s, r in (("a", "b"), ("b", "a")):
                    assert _story(feed.get(s, []), sent[s]) == expected_sender
                    assert _story(feed.get(r, []), sent[s]) == ["message.received"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
