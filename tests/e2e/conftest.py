"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.support import UnkeyedServer


@pytest.fixture
def unkeyed_server_factory(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[..., UnkeyedServer]]:
    """Like `server_factory`, but the servers start without `API_KEY` in their environment.

    Every server made here shares the database and the data dir; each has its own port.
    """
    started: list[UnkeyedServer] = []

    def make(**env: str) -> UnkeyedServer:
        server = UnkeyedServer(database_url, tmp_path / "data", **env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL)
