"""Fixtures shared by every test module (they live in tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.server",
    "tests.fixtures.s3",
]
