"""Fixtures of the engine tests: a whatsmeow app and the loopback proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.fixtures.app import Api, AppFactory
from tests.fixtures.proxy_apps import AnyProxyApps


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


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> AppFactory:
    """Session proxies on loopback, where these tests' proxies listen, are allowed."""
    return AnyProxyApps(database_url, tmp_path / "data")
