"""What the benchmarks share: their admin key, a free port, starting the real server
(`python -m openwa serve`) and waiting until it answers `/health`, a fresh database per
server, linking a mock session, a webhook receiver in a process of its own, and running N
calls from C concurrent clients.

Benchmarks run as scripts (`python benchmarks/x.py`), so they import this module by its
plain name. Servers start on the mock engine unless a benchmark asks for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import orjson

from openwa.webhooks.signing import generate_secret, signature_header

KEY = "bench-admin-key-0123456789abcdef"


# What the benchmarks' mock servers share: acks at once, webhooks to loopback receivers.
MOCK_ENV = {"MOCK_ACK_DELAY_MS": "0", "WEBHOOK_ALLOW_PRIVATE": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(
    port: int,
    env: dict[str, str],
    log: IO[bytes] | int,
    cwd: Path | None = None,
    program: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """`openwa serve` on `port` with the benchmark key, quiet logs, rate limits far above
    what a benchmark sends (so they cost their check but never throttle), `env` on top.
    `program` runs instead of `-m openwa` (a script that takes the same arguments)."""
    defaults = {
        "API_KEY": KEY,
        "ENGINE_TYPE": "mock",
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_ADMIN": "1000000/second",
        "RATE_LIMIT_OPERATOR": "1000000/second",
        "RATE_LIMIT_VIEWER": "1000000/second",
        "RATE_LIMIT_AUTH_FAILURES": "1000000/minute",
    }
    argv = [*(program or ["-m", "openwa"]), "serve", "--port", str(port)]
    return spawn(argv, {**defaults, **env}, log, cwd)


def spawn(
    args: list[str], env: dict[str, str], log: IO[bytes] | int, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """This Python with `args` (a module or a script), the environment plus `env`."""
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time PostgreSQL's processes have used so far, on this machine's cores.

    Each process's own time plus the time of its exited children (the postmaster's:
    backends that ended), so a backend that ends inside a window is still counted."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue  # gone, or not readable
        if comm == "postgres":
            fields = rest.split()
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM and wait; SIGKILL if it has not gone after `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


RECEIVER_PIDS: dict[str, int] = {}  # a running receiver's process, by its URL (its CPU time)


@contextlib.asynccontextmanager
async def webhook_receiver(http: aiohttp.ClientSession) -> AsyncIterator[str]:
    """`receiver.py` in a process of its own (so that it shares no CPU with the client),
    on a free port, answering: its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = spawn(
        [str(Path(__file__).resolve().parent / "receiver.py"), "--port", str(port)], {}, 1
    )
    RECEIVER_PIDS[url] = process.pid
    try:
        await wait_healthy(http, url, process)
        yield url
    finally:
        del RECEIVER_PIDS[url]
        stop(process)


async def received(http: aiohttp.ClientSession, receiver: str, tag: str, expected: int) -> float:
    """Wait until the receiver has `expected` deliveries to `tag`; the last one's time."""
    while True:
        async with http.get(f"{receiver}/stats/{tag}") as response:
            stats = await response.json()
        if stats["count"] >= expected:
            last: float = stats["last"]
            return last
        await asyncio.sleep(0.1)


async def signed_post_loops(
    http: aiohttp.ClientSession, receiver: str, total: int, loops: int
) -> tuple[float, str]:
    """`total` signed POSTs of a message.received envelope to the receiver, from `loops`
    sequential loops (one per webhook): their rate, and the CPU time they took in this
    process (the floor of a delivery's cost)."""
    tag, secret = secrets.token_hex(6), generate_secret()
    url = f"{receiver}/hook/{tag}"

    async def deliver(i: int) -> None:
        event_id = f"evt_{tag}_{i}"
        now = time.time()
        body = orjson.dumps(
            {
                "id": event_id,
                "event": "message.received",
                "sessionId": "ses_0123456789abcdef",
                "timestamp": iso(now),
                "data": {
                    "id": f"3EB0{i:016X}",
                    "chatId": "4915112345678@s.whatsapp.net",
                    "from": "4915112345678@s.whatsapp.net",
                    "fromMe": False,
                    "type": "text",
                    "text": f"in {i}",
                    "timestamp": iso(now),
                },
                "engine": "mock",
                "metadata": {},
            }
        )
        stamp = int(now)
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header([secret], event_id, stamp, body),
        }
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()

    clock, cpu = time.monotonic(), time.process_time()
    started, _ = await run_clients(loops, total, deliver)
    rate = total / (await received(http, receiver, tag, total) - started)
    wall, cpu = time.monotonic() - clock, time.process_time() - cpu
    return rate, f"loops {1000 * cpu / total:.2f} ms CPU per POST, {100 * cpu / wall:.0f} % busy"


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


async def run_clients(
    clients: int, total: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """`call(0..total-1)` from `clients` concurrent tasks; (wall start, seconds taken)."""
    pending = iter(range(total))

    async def client() -> None:
        for i in pending:
            await call(i)

    started, clock = time.time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return started, time.perf_counter() - clock


@contextlib.asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    """A new, empty database for one server: a SQLite file in a temporary directory,
    or a PostgreSQL database on 127.0.0.1:5432 created now and dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="openwa-bench-db-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/bench.db"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database {kind!r} (sqlite or postgres)")
    name = "openwa_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def link_mock(http: aiohttp.ClientSession, base: str, name: str) -> dict[str, Any]:
    """Create a mock session and wait until it is `ready`; its record (id, phoneNumber)."""
    async with http.post(base + "/api/sessions", json={"name": name, "engine": "mock"}) as r:
        if r.status != 201:
            raise RuntimeError(f"session create answered {r.status}: {await r.text()}")
        session_id = (await r.json())["data"]["id"]
    for _ in range(300):
        async with http.get(f"{base}/api/sessions/{session_id}") as r:
            data: dict[str, Any] = (await r.json())["data"]
        if data["status"] == "ready":
            return data
        await asyncio.sleep(0.1)
    raise RuntimeError(f"mock session {name} not ready after 30 s")
