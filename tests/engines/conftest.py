"""Fixtures of the engine tests: a whatsmeow app and the loopback proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openwa.config import Settings
from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.fixtures.app import Api, AppFactory


@pytest.fixture
async def wm_api(app_factory: AppFactory) -> AsyncIterator[Api]:
    """The app with whatsmeow as the default engine."""
    async with app_factory.running(engine_type="whatsmeow") as started:
        yield started


@pytest.fixture
async def silent() -> AsyncIterator[SilentProxy]:
    proxy = await SilentProxy().start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingProxy]:
    proxy = await RecordingProxy().start()
    yield proxy
    await proxy.close()


class LoopbackProxyApps(AppFactory):
    """Apps that accept session proxies on loopback, where these tests' proxies listen."""

    def settings(self, **overrides: Any) -> Settings:
        overrides.setdefault("proxy_allow_private", True)
        return super().settings(**overrides)


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> AppFactory:
    return LoopbackProxyApps(database_url, tmp_path / "data")
