"""Fixtures shared by every test module (they live in tests/fixtures/)."""

import pytest

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.server",
    "tests.fixtures.s3",
    "tests.fixtures.private_postgres",
    "tests.fixtures.blackhole",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked `in_order` (the three-instance scenario, the forwarding pair) are
    collected first, each module's tests in their order, so that one process runs each.

    Their tests share one cluster (module scope) and follow each other (`kill -9`, then
    SIGSTOP, then SIGTERM; a scan, then the calls that need it). pytest-xdist's
    `worksteal` gives each process a contiguous block of tests and, when a process runs
    dry, moves the *tail* of another's queue: at the head of the first block, such a
    module can never be split across processes; and its long set-up starts at once.
    """
    first = [item for item in items if item.get_closest_marker("in_order")]
    if first:
        rest = [item for item in items if not item.get_closest_marker("in_order")]
        items[:] = first + rest
