"""Fixtures shared by every test module (they live in tests/fixtures/)."""

import pytest

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.server",
    "tests.fixtures.s3",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The three-instance scenario (`cluster` marker) runs first, in order, in one process.

    Its tests share one cluster (module scope) and follow each other (`kill -9`, then
    SIGSTOP, then SIGTERM). pytest-xdist's `worksteal` gives each process a contiguous
    block of tests and, when a process runs dry, moves the *tail* of another's queue:
    placed first, the scenario is at the head of the first block, so it can never be
    split across processes; and its minute and a half starts at once, not at the end.
    """
    first = [item for item in items if item.get_closest_marker("cluster")]
    if first:
        rest = [item for item in items if not item.get_closest_marker("cluster")]
        items[:] = first + rest
