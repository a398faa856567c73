"""Fixtures of the session tests: an app whose mock sessions wait long for a scan."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures.app import Api, AppFactory

# Long enough that a session stays in `qr_ready` for the whole test unless it is
# scanned or paired; shutdown cancels the pending link.
SLOW_AUTH_DELAY_MS = 60_000


@pytest.fixture
async def slow_api(app_factory: AppFactory) -> AsyncIterator[Api]:
    started, manager = await app_factory.start(mock_auth_delay_ms=SLOW_AUTH_DELAY_MS)
    try:
        yield started
    finally:
        await AppFactory.stop(started, manager)
