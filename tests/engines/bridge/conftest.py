"""Fixtures of the bridge engines' tests: apps whose bridge is the shared install (see
`bridge_dir` in tests/engines/conftest.py); loopback proxies come from there too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from openwa.engines.bridge.install import NodeRuntime
from tests.fixtures.app import AppFactory
from tests.fixtures.proxy_apps import AnyProxyApps


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path, bridge_dir: Path) -> AppFactory:
    """Session proxies on loopback are allowed; the bridge is installed (`bridge_dir`)."""
    return AnyProxyApps(database_url, tmp_path / "data")


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bridge directory whose `bridge.js` the stand-in `node` replaces (see
    `standin/bridge.py`); its send log and the words it is told (`hold`) go to tmp_path."""
    directory = tmp_path / "standin-bridge"
    directory.mkdir()
    (directory / "bridge.js").write_text("// run by tests/engines/bridge/standin/node\n")
    NodeRuntime("node", directory).stamp()
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "sends.log"))
    monkeypatch.setenv("STANDIN_HOLDS", str(tmp_path / "holds.log"))
    monkeypatch.setenv("STANDIN_PYTHON", sys.executable)
    return directory
