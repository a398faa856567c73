"""Engine processes (the whatsmeow workers, the Node bridge and its browsers, npm's
install scripts) start without OpenWA's own settings in their environment: they get what
they need from their arguments and frames, and with the whole environment they held
API_KEY, ENCRYPTION_KEY, DATABASE_URL and the S3 secret for any library to print."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.children import ChildProcess, child_environment
from tests.fixtures.app import wait_for

SECRETS = {
    "API_KEY": "owa_environment-key-0123456789",
    "ENCRYPTION_KEY": "environment-encryption-key",
    "DATABASE_URL": "postgresql+asyncpg://u:pw-0123@db/openwa",
    "S3_SECRET_ACCESS_KEY": "s3-secret-0123",
    "cluster_secret": "cluster-secret-0123",  # the settings' names are case-blind
}


class EnvironmentDump(ChildProcess):
    """A child that writes its environment to a file and exits."""

    async def decode(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        await reader.read()
        return None


async def _exited() -> None:
    return None


async def test_an_engine_process_gets_none_of_our_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")  # not ours: passed on
    dump = tmp_path / "environ"
    script = f"import os; open({str(dump)!r}, 'w').write(repr(dict(os.environ)))"
    child = EnvironmentDump(lambda _frame: asyncio.sleep(0), _exited)
    await child.spawn([sys.executable, "-c", script])
    await wait_for(lambda: asyncio.sleep(0, dump.exists()), bool, 20, "the dump")
    await wait_for(lambda: asyncio.sleep(0, dump.read_text()), bool, 20, "the dump written")
    seen: dict[str, str] = ast.literal_eval(dump.read_text())
    assert not set(SECRETS) & set(seen)
    assert seen["LANG"] == "C.UTF-8"
    assert "PATH" in seen


def test_names_that_are_not_settings_pass() -> None:
    given = {"PATH": "/bin", "HOME": "/root", "Api_Key": "x", "OPENWA_BRIDGE_LOG_LEVEL": "info"}
    assert child_environment(given) == {
        "PATH": "/bin",
        "HOME": "/root",
        "OPENWA_BRIDGE_LOG_LEVEL": "info",
    }
