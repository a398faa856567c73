"""Helpers for the end-to-end tests: waiting on a real server, keys in logs, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.server import ServerProcess

# `owa_` + secrets.token_urlsafe(32): 43 URL-safe base64 characters.
GENERATED_KEY = re.compile(r"owa_[A-Za-z0-9_-]{43}")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class UnkeyedServer(ServerProcess):
    """A server started with `API_KEY` not set at all, as a new user would start it."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("API_KEY", None)
        return env


def generated_keys(log: str) -> list[str]:
    return GENERATED_KEY.findall(log)


def log_events(log: str) -> list[dict[str, Any]]:
    """The structured (JSON) log lines of a server log; other lines are skipped."""
    events = []
    for line in log.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def log_problems(log: str) -> list[str]:
    """Lines that say something went wrong: errors, tracebacks, uvicorn failures."""
    bad = [
        line
        for line in log.splitlines()
        if "Traceback" in line or line.startswith(("ERROR", "CRITICAL"))
    ]
    bad += [json.dumps(e) for e in log_events(log) if e.get("level") in {"error", "critical"}]
    return bad


def wait_until(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    timeout: float = 15.0,
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")


def get_session(client: httpx.Client, ref: str) -> dict[str, Any]:
    response = client.get(f"/api/sessions/{ref}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def wait_status(
    client: httpx.Client, ref: str, status: str, timeout: float = 15.0
) -> dict[str, Any]:
    result: dict[str, Any] = wait_until(
        lambda: get_session(client, ref),
        lambda s: s["status"] == status,
        timeout,
        f"session {ref} to be {status}",
    )
    return result


def cli_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("API_KEY", "DATABASE_URL", "DATA_DIR", "ENGINE_TYPE"))
    }
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(data_dir), LOG_FORMAT="json", ENGINE_TYPE="mock"
    )
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openwa", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
