"""What the benchmarks share: their admin key, a free port, starting the real server
(`python -m openwa serve`) and waiting until it answers `/health`.

Benchmarks run as scripts (`python benchmarks/x.py`), so they import this module by its
plain name. Servers start on the mock engine unless a benchmark asks for another.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import aiohttp

KEY = "bench-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(
    port: int, env: dict[str, str], log: IO[bytes] | int, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`openwa serve` on `port` with the benchmark key, quiet logs and `env` on top."""
    defaults = {"API_KEY": KEY, "ENGINE_TYPE": "mock", "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", "openwa", "serve", "--port", str(port)],
        env={**os.environ, **defaults, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


async def wait_healthy(
    http: aiohttp.ClientSession,
    base: str,
    process: subprocess.Popen[bytes],
    log: Path | None = None,
    timeout_s: float = 60.0,
) -> None:
    for _ in range(int(timeout_s * 10)):
        if process.poll() is not None:
            detail = log.read_text() if log is not None else f"exit code {process.returncode}"
            raise RuntimeError("server exited:\n" + detail)
        try:
            async with http.get(base + "/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server did not become healthy in {timeout_s:.0f} s")
