"""Schemathesis against the real server, on both databases: no request it makes gets a
5xx outside the contract's (fuzz_checks.py) or a response that breaks its own schema.

Bounded so that it can run in CI: a fixed seed, a few examples per operation and a time
budget. `status_code_conformance` holds the server to the statuses its document lists
(tests/api/test_openapi.py checks the document itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.app import ADMIN_KEY

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.e2e]

SEED = 20261203
MAX_EXAMPLES = 3
MAX_TIME_S = 25


def test_no_5xx_and_no_schema_violation(server_factory: Any, tmp_path: Path) -> None:
    # Limits generous enough that the fuzzer is never rate limited (per-role RATE_LIMIT_*).
    server = server_factory(
        RATE_LIMIT_ADMIN="1000000/second",
        RATE_LIMIT_OPERATOR="1000000/second",
        RATE_LIMIT_VIEWER="1000000/second",
        LOG_LEVEL="warning",
        # A Baileys or whatsapp-web.js session the fuzzer creates fails to start at once
        # instead of installing the bridge from the npm registry (19 s, and a connection
        # off this machine) inside the request: nothing here may leave loopback.
        NODE_BRIDGE_DIR=str(tmp_path / "not-a-directory" / "node"),
    )
    (tmp_path / "not-a-directory").write_text("")
    server.start()
    with server.client() as client:  # something to find: a ready session, a webhook
        client.post("/api/sessions", json={"name": "fuzzed"}).raise_for_status()
    st = Path(sys.executable).with_name("st")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.fuzz_checks"}
    root = Path(__file__).resolve().parents[2]  # the hooks module is `tests.api....`
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"X-API-Key: {ADMIN_KEY}",
            "--checks",
            "no_internal_error,response_schema_conformance,content_type_conformance,"
            "status_code_conformance",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_TIME_S),
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--generation-allow-x00",
            "true",
            # An endless stream: the fuzzer would wait on it until its timeout.
            "--exclude-path",
            "/api/events/stream",
            "--continue-on-failure",
            "--no-color",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=MAX_TIME_S + 120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Traceback" not in server.log(), server.log()[-4000:]
