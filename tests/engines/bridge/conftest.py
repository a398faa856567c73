"""Fixtures of the bridge engines' tests: the bridge installed once per checkout (pinned
`npm ci`, shared by the test processes under a file lock) and apps that use it; the
loopback proxies come from tests/engines/conftest.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from openwa.config import Settings
from openwa.engines.bridge.install import BridgeUnavailable, NodeRuntime
from tests.fixtures.app import AppFactory
from tests.fixtures.bridge import BRIDGE_DIR
from tests.fixtures.proxy_apps import AnyProxyApps


def _install() -> None:
    asyncio.run(NodeRuntime("node", BRIDGE_DIR).ensure())  # locked across test processes


@pytest.fixture(scope="session")
def bridge_dir() -> Path:
    try:
        _install()
    except BridgeUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Node.js bridge cannot be installed: {exc}", pytrace=False)
        pytest.skip(f"the Node.js bridge cannot be installed: {exc}")
    return BRIDGE_DIR


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path, bridge_dir: Path) -> AppFactory:
    """Session proxies on loopback are allowed; the bridge comes from the shared install."""
    return BridgeApps(database_url, tmp_path / "data", bridge_dir)


class BridgeApps(AnyProxyApps):
    def __init__(self, database_url: str, data_dir: Path, bridge_dir: Path) -> None:
        super().__init__(database_url, data_dir)
        self.bridge_dir = bridge_dir

    def settings(self, **overrides: Any) -> Settings:
        overrides.setdefault("node_bridge_dir", self.bridge_dir)  # installed by the fixture
        return super().settings(**overrides)
