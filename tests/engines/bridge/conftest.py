"""Fixtures of the bridge engines' tests: apps whose bridge is the shared install (see
`bridge_dir` in tests/engines/conftest.py); loopback proxies come from there too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.app import AppFactory
from tests.fixtures.proxy_apps import AnyProxyApps


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path, bridge_dir: Path) -> AppFactory:
    """Session proxies on loopback are allowed; the bridge is installed (`bridge_dir`)."""
    return AnyProxyApps(database_url, tmp_path / "data")
