"""Graceful shutdown: SIGTERM drains and exits 0 within SHUTDOWN_TIMEOUT_S."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.e2e.support import log_events, log_problems, wait_status
from tests.fixtures.server import ServerProcess

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_S = 5


def test_sigterm_exits_zero_within_the_shutdown_timeout(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # A long link delay: the session waits for its scan when SIGTERM arrives.
    server = server_factory(SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S), MOCK_AUTH_DELAY_MS="600000")
    server.start()
    with server.client() as client:
        response = client.post("/api/sessions", json={"name": "waiting"})
        assert response.status_code == 201, response.text
        wait_status(client, "waiting", "qr_ready")

    started = time.monotonic()
    code = server.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT_S + 5)
    elapsed = time.monotonic() - started
    log = server.log()
    assert code == 0, f"exit code {code}\n{log}"
    assert elapsed < SHUTDOWN_TIMEOUT_S, elapsed
    events = [e["event"] for e in log_events(log)]
    assert "stopped" in events, log
    assert events.index("stopped") > events.index("started")
    assert log_problems(log) == []
