"""Fixtures of the engine tests: a whatsmeow app and the loopback proxies."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openwa.engines.bridge.install import BridgeUnavailable, NodeRuntime
from openwa.engines.whatsmeow.engine import WorkerProcess
from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.fixtures.app import Api, AppFactory
from tests.fixtures.bridge import BRIDGE_DIR
from tests.fixtures.proxy_apps import AnyProxyApps


@pytest.fixture
async def wm_api(app_factory: AppFactory) -> AsyncIterator[Api]:
    """The app with whatsmeow as the default engine."""
    async with app_factory.running(engine_type="whatsmeow") as started:
        yield started


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The real worker process with Go's client a stand-in (`standin_worker`); the file
    where it writes down what reached WhatsApp's edge."""
    sends = tmp_path / "sends"
    sends.touch()
    monkeypatch.setenv("OPENWA_TEST_SENDS", str(sends))
    monkeypatch.setattr(WorkerProcess, "module", "tests.engines.standin_worker")
    return sends


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


@pytest.fixture(scope="session")
def bridge_dir() -> Path:
    """The Node.js bridge, installed once for every test process (the install is locked
    across processes; `make test` has put its dependencies in already)."""
    try:
        # On a thread: an async fixture may be the first to ask, inside its loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, NodeRuntime("node", BRIDGE_DIR).ensure()).result()
    except BridgeUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Node.js bridge cannot be installed: {exc}", pytrace=False)
        pytest.skip(f"the Node.js bridge cannot be installed: {exc}")
    return BRIDGE_DIR
