"""Deliveries never follow redirects: a 3xx is a failed attempt, logged with its Location.

Reproductions of the probe's finding: a receiver that answered `307 Location:
http://127.0.0.1:PORT/...` made the server POST the signed body and the webhook's
headers to a loopback service; a `302` became a GET there; a redirect to the cloud
metadata address was attempted. Here the first receiver redirects to a second one (the
`receiver` fixture), which must receive nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.app import Api
from tests.fixtures.server import free_port
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    data_of,
    failed_for_good,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)


@dataclass
class Redirector:
    """A loopback server that answers every request with `status` and `Location: to`."""

    status: int = 307
    to: str = ""
    port: int = field(default_factory=free_port)
    methods: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.methods.append(request.method)
            await request.read()
            return web.Response(status=self.status, headers={"Location": self.to})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def redirector() -> AsyncIterator[Redirector]:
    server = Redirector()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def failed_delivery(api: Api, url: str, attempts: int) -> dict[str, Any]:
    """Register `url`, raise one event, and wait for its delivery to fail for good."""
    session = await ready_session(api)
    hook = await register(
        api,
        session["id"],
        url,
        events=["message.received"],
        headers={"Authorization": "Bearer receiver-credential"},
    )
    await inbound(api, session["id"], "where does this go")
    delivery = await failed_for_good(api, session["id"], hook["id"], url)
    assert delivery["attempts"] == attempts
    result: dict[str, Any] = delivery
    return result


@pytest.mark.parametrize("status", [307, 302, 301, 308, 303])
async def test_a_redirect_is_a_failed_attempt_and_not_followed(
    apps: Apps, receiver: Receiver, redirector: Redirector, status: int
) -> None:
    api = await apps.start(webhook_max_attempts=2)
    redirector.status = status
    redirector.to = f"{receiver.base}/internal/admin?token=t0p-s3cret"
    delivery = await failed_delivery(api, redirector.url, attempts=2)
    # Retried by the normal backoff (two attempts), each a POST to the first receiver only.
    assert redirector.methods == ["POST", "POST"]
    assert receiver.requests == [], "the redirect was followed"
    assert delivery["lastStatusCode"] == status
    assert "redirect" in delivery["lastError"].lower()
    for attempt in delivery["log"]:
        assert attempt["statusCode"] == status
        assert "redirect" in attempt["error"].lower()
        # Where it pointed, kept for the operator, with its token masked.
        assert attempt["location"] == f"{receiver.base}/internal/admin?token=***"
    # A viewer sees where it pointed, not the path (a receiver's token may be in it).
    viewer = await api.new_key("viewer")
    path = f"/api/sessions/{delivery['sessionId']}/webhooks/{delivery['webhookId']}/deliveries"
    response = await api.request("GET", path, key=viewer)
    [shown] = data_of(response)
    assert {a["location"] for a in shown["log"]} == {f"{receiver.base}/***?***"}
    assert "internal" not in response.text


async def test_a_redirect_to_the_metadata_address_is_not_attempted(
    apps: Apps, redirector: Redirector
) -> None:
    api = await apps.start(webhook_max_attempts=1)
    redirector.to = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    delivery = await failed_delivery(api, redirector.url, attempts=1)
    [attempt] = delivery["log"]
    # Answered at once by the redirect itself, not by a connection attempt that timed out.
    assert attempt["statusCode"] == 307
    assert attempt["location"] == redirector.to
    assert "redirect" in attempt["error"].lower()
    assert redirector.methods == ["POST"]


async def test_a_success_has_no_location(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    await inbound(hapi, session["id"], "plain")
    [delivery] = await wait_deliveries(
        hapi, session["id"], hook["id"], lambda ds: len(ds) == 1 and ds[0]["status"] == "succeeded"
    )
    assert [a["location"] for a in delivery["log"]] == [None]
