"""Fixtures of the session tests: apps that take any proxy (see AnyProxyApps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.app import AppFactory
from tests.fixtures.proxy_apps import AnyProxyApps


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> AppFactory:
    return AnyProxyApps(database_url, tmp_path / "data")
