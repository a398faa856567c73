"""Fixtures of the webhook tests: a real HTTP receiver, and apps that may deliver to it.

`receiver` is a started `tests.webhooks.receiver.Receiver` (aiohttp on 127.0.0.1 and
a free port, recording every request, with a scriptable answer; stop and start it to
play a receiver that is down). `apps` starts apps on the test's database with fast
webhook settings that allow loopback URLs; `hapi` is one such app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.app import Api, AppFactory
from tests.webhooks.receiver import Receiver

# Settings of an app that delivers quickly to a loopback receiver.
FAST_WEBHOOKS: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_timeout_s": 5.0,
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


class Apps:
    """Starts apps (with FAST_WEBHOOKS unless overridden) and stops what is left at the end."""

    def __init__(self, factory: AppFactory) -> None:
        self.factory = factory
        self._running: list[tuple[Api, Any]] = []

    async def start(self, **overrides: Any) -> Api:
        api, manager = await self.factory.start(**{**FAST_WEBHOOKS, **overrides})
        self._running.append((api, manager))
        return api

    async def stop(self, api: Api) -> None:
        for item in list(self._running):
            if item[0] is api:
                self._running.remove(item)
                await AppFactory.stop(*item)

    async def close(self) -> None:
        while self._running:
            await AppFactory.stop(*self._running.pop())


@pytest.fixture
async def apps(receiver: Receiver, app_factory: AppFactory) -> AsyncIterator[Apps]:
    # Depends on `receiver` so that apps stop before the receiver does.
    started = Apps(app_factory)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def hapi(apps: Apps) -> Api:
    """An app that may deliver to the loopback receiver, quickly."""
    return await apps.start()
