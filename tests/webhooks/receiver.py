"""A real HTTP receiver of webhooks, for the tests (not a test module).

An aiohttp server on 127.0.0.1 and a free port. It records every request (headers,
body, arrival time, the status it answered) and answers as its `respond` script says:
a status code, or a sleep first. It can be stopped and started again on the same
port, to play a receiver that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fixtures.app import wait_for
from tests.fixtures.server import free_port


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() on arrival
    index: int  # 0-based position among all requests
    answered: int | None = None  # the status answered, None while not (yet) answered

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event_id(self) -> str | None:
        try:
            value = self.payload.get("id")
        except ValueError:
            return None
        return value if isinstance(value, str) else None

    @property
    def event(self) -> str | None:
        try:
            value = self.payload.get("event")
        except ValueError:
            return None
        return value if isinstance(value, str) else None

    @property
    def ok(self) -> bool:
        return self.answered is not None and 200 <= self.answered < 300


# A script: given the request, the status to answer (optionally after a sleep).
Respond = Callable[["Received"], Awaitable[int] | int]


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    respond: Respond = field(default=lambda _: 200)
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        assert self._runner is None, "the receiver is already up"
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        for attempt in range(50):
            try:
                await site.start()
                break
            except OSError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)  # the port may linger a moment after a stop
        self._runner = runner

    async def stop(self) -> None:
        """Go down: requests now find the port closed."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._closing.set()  # sleeping handlers end now
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            at=time.monotonic(),
            index=len(self.requests),
        )
        self.requests.append(received)
        result = self.respond(received)
        status = await result if isinstance(result, Awaitable) else result
        received.answered = status
        return web.Response(status=status, text="ok" if status < 300 else "no")

    # Scripts.

    def answer(self, status: int) -> None:
        """Answer every request with `status`."""
        self.respond = lambda _: status

    def fail_first(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status`, then 200."""
        remaining = [count]

        def respond(_: Received) -> int:
            if remaining[0] > 0:
                remaining[0] -= 1
                return status
            return 200

        self.respond = respond

    def sleep(self, seconds: float, status: int = 200) -> None:
        """Answer every request only after `seconds` (or when the receiver stops)."""

        async def respond(_: Received) -> int:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
            return status

        self.respond = respond

    # Reading what arrived.

    def of(self, event: str | None = None, path: str | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if (event is None or r.event == event) and (path is None or r.path == path)
        ]

    def acknowledged(self, event: str | None = None) -> list[Received]:
        """Requests answered with a 2xx."""
        return [r for r in self.of(event) if r.ok]

    def first_acks(self, event: str | None = None) -> list[str]:
        """Event ids in the order of their first 2xx, each once."""
        seen: list[str] = []
        for r in self.acknowledged(event):
            if r.event_id and r.event_id not in seen:
                seen.append(r.event_id)
        return seen

    async def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float = 10.0, what: str = ""
    ) -> list[Received]:
        async def snapshot() -> list[Received]:
            return list(self.requests)

        result: list[Received] = await wait_for(
            snapshot, done, timeout, what or "the receiver's requests"
        )
        return result
