"""Fixtures of the group tests: the usual app, with mock sessions that link at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures.app import Api, AppFactory


@pytest.fixture
async def api(app_factory: AppFactory) -> AsyncIterator[Api]:
    async with app_factory.running(mock_auth_delay_ms=20) as started:
        yield started
