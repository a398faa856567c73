"""Memory per idle session: 100 whatsmeow sessions without network, 1,000 mock sessions.

Starts the real server (`python -m openwa serve`, SQLite in a temporary directory unless
`--database-url` is given) twice, once per engine, and reads the resident memory
(VmRSS in /proc/<pid>/status) of the server and, for whatsmeow, of its worker processes
added up (`python -m openwa.engines.whatsmeow.worker`, children of the server: one per
`WHATSMEOW_SESSIONS_PER_WORKER` sessions, default 50, taken from this script's
environment).

whatsmeow: this machine has no route to WhatsApp, and a session that cannot dial fails
at once and retries with backoff, which is not idle. So every session gets
`config.proxy` pointing at a loopback "black hole" HTTP proxy run by this script: it
accepts the TCP connection, reads what comes and never answers. The session then sits in
its dial (status `initializing`, one open connection to the proxy) until whatsmeow's
own timeout. Points: the server with 0 sessions; server + worker with 1 session; with N
(100). Each point is read after every session is `initializing` and has its
connection open, plus a settle time; the script checks afterwards that all of them were
still waiting at the moment of the reading.

mock: the server with 0 sessions, with 1 and with N (1,000) linked (`ready`) sessions
(MOCK_AUTH_DELAY_MS=0, so a started session links itself at once).

Per session = (RSS at N - RSS at 1) / (N - 1); for whatsmeow RSS is the server's plus
the worker's. The first session's cost (0 -> 1, which for whatsmeow includes starting
the worker process) is shown apart. After the last reading the script waits for the
first dial to time out (to report how long whatsmeow waits), then closes the proxy so
every dial fails at once and the server stops quickly. The server's log is summed up
by level and event, split at the last reading.

With `--database-url postgresql+asyncpg://user@host:port/db`, each phase runs on a new
database created on that server (through `db`, which must exist) and dropped after; the
connections to it are shown at each reading. whatsmeow keeps one PostgreSQL connection
per session in the worker, so N whatsmeow sessions need max_connections above N plus
the server's pool.

Usage: .venv/bin/python benchmarks/engine_memory.py [--whatsmeow 100] [--mock 1000]
       [--settle-s 5] [--database-url URL] [--keep-logs]. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from bench_server import KEY, free_port, serve, wait_healthy

MB = 1024 * 1024
WORKER_MODULE = "openwa.engines.whatsmeow.worker"


@dataclass
class Memory:
    rss: int
    threads: int


def memory(pid: int) -> Memory:
    """VmRSS (bytes) and the thread count of `pid`."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "Threads"):
            values[name] = int(rest.split()[0])
    return Memory(values["VmRSS"] * 1024, values["Threads"])


def children(pid: int) -> list[int]:
    """Child pids of `pid`: /proc/<pid>/task/*/children, else a scan of /proc/*/stat."""
    found: set[int] = set()
    tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if tasks:
        for path in tasks:
            try:
                found.update(int(child) for child in path.read_text().split())
            except OSError:
                continue
        return sorted(found)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields: state, ppid, ...
            found.add(int(stat.parent.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """True unless `pid` is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def worker_pids(server_pid: int) -> list[int]:
    """The server's whatsmeow workers (one per `WHATSMEOW_SESSIONS_PER_WORKER` sessions)."""
    found = []
    for pid in children(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if WORKER_MODULE.encode() in argv:
            found.append(pid)
    return found


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` as asyncpg takes it."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


async def fresh_postgres(url: str, engine: str) -> tuple[str, str]:
    """A new database on the server of `url` (whose database must exist): (name, URL)."""
    name = f"openwa_bench_mem_{engine}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def drop_postgres(url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def postgres_connections(url: str) -> int:
    """Connections to the database of `url` (besides the one asking)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return count


class BlackHole:
    """A loopback "HTTP proxy" that accepts connections and never answers."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.opened_at: list[float] = []
        self.closed = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dial_ended = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.opened_at.append(time.monotonic())
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while await reader.read(65536):
                pass  # the CONNECT request; never answered
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self.closed += 1
            self.dial_ended.set()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        """Close the listener and every connection: dials then fail at once."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class Server:
    def __init__(self, work: Path, database_url: str, engine: str) -> None:
        self.database = database_url if database_url.startswith("postgres") else None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = work / f"server-{engine}.log"
        data_dir = work / f"data-{engine}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "ENGINE_TYPE": engine,
            "MAX_SESSIONS": "2000",
            "MOCK_AUTH_DELAY_MS": "0",
            # The "black hole" proxy listens on loopback, which sessions may not use unless
            # allowed.
            "PROXY_ALLOW_PRIVATE": "true",
        }
        with self.log.open("ab") as log:
            self.process = serve(self.port, env, log, cwd=work)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        await wait_healthy(http, self.base, self.process, self.log)


@dataclass
class Point:
    engine: str
    sessions: int
    server: Memory
    worker: Memory | None
    note: str = ""

    @property
    def total(self) -> int:
        return self.server.rss + (self.worker.rss if self.worker else 0)


@dataclass
class Phase:
    engine: str
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    create_s: float = 0.0
    last_reading: float | None = None  # epoch seconds


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def create(
    http: aiohttp.ClientSession, server: Server, name: str, engine: str, config: dict[str, Any]
) -> str:
    body = {"name": name, "engine": engine, "config": config}
    async with http.post(server.base + "/api/sessions", json=body) as response:
        data = await response.json()
        if response.status != 201:
            raise RuntimeError(f"creating {name} answered {response.status}: {data}")
    session_id: str = data["data"]["id"]
    return session_id


async def statuses(http: aiohttp.ClientSession, server: Server) -> dict[str, dict[str, Any]]:
    """Every session by id, through the paged list (100 a page)."""
    found: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        url = f"{server.base}/api/sessions?page={page}&limit=100"
        async with http.get(url) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"listing sessions answered {response.status}: {body}")
        for session in body["data"]:
            found[session["id"]] = session
        if page >= body["pagination"]["totalPages"]:
            return found
        page += 1


async def wait_statuses(
    http: aiohttp.ClientSession,
    server: Server,
    ids: list[str],
    wanted: set[str],
    timeout: float,
    extra: Callable[[], bool] = lambda: True,
) -> dict[str, dict[str, Any]]:
    """Wait until every session in `ids` has a status in `wanted` (and `extra()`)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited; see {server.log}")
        found = await statuses(http, server)
        bad = {i: found[i]["status"] for i in ids if found[i]["status"] in ("failed", "stopped")}
        if bad:
            first = next(iter(bad))
            raise RuntimeError(
                f"{len(bad)} sessions went {set(bad.values())}; e.g. {found[first]['lastError']!r}"
            )
        if all(found[i]["status"] in wanted for i in ids) and extra():
            return found
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for i in ids:
                counts[found[i]["status"]] = counts.get(found[i]["status"], 0) + 1
            errors = sorted({found[i]["lastError"] for i in ids} - {None})
            raise RuntimeError(f"timed out waiting for {wanted}: {counts}; errors: {errors[:3]}")
        await asyncio.sleep(0.25)


def join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


async def read_point(server: Server, engine: str, sessions: int) -> Point:
    """The server's memory and its workers' added up (RSS and threads)."""
    workers = [memory(pid) for pid in worker_pids(server.pid)]
    total = (
        Memory(sum(w.rss for w in workers), sum(w.threads for w in workers)) if workers else None
    )
    point = Point(engine, sessions, memory(server.pid), total)
    if workers:
        point.note = f"{len(workers)} worker process(es)"
    if server.database is not None:
        point.note = join_notes(
            point.note, f"{await postgres_connections(server.database)} PostgreSQL connections"
        )
    return point


async def check_empty(http: aiohttp.ClientSession, server: Server) -> None:
    if await statuses(http, server):
        raise RuntimeError("the database already has sessions; give an empty database")


async def whatsmeow_phase(work: Path, url: str, count: int, settle: float) -> Phase:
    phase = Phase("whatsmeow")
    hole = BlackHole()
    await hole.start()
    config = {"proxy": hole.url}
    server = Server(work, url, "whatsmeow")
    run = secrets.token_hex(3)
    ids: list[str] = []
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(headers={"X-API-Key": KEY}, timeout=timeout) as http:
            await server.wait_healthy(http)
            await check_empty(http, server)
            await asyncio.sleep(settle)
            phase.points.append(await read_point(server, "whatsmeow", 0))

            def dialed(n: int) -> Callable[[], bool]:
                return lambda: hole.open >= n

            ids.append(await create(http, server, f"wm-{run}-0", "whatsmeow", config))
            await wait_statuses(http, server, ids, {"initializing"}, 60, dialed(1))
            await asyncio.sleep(settle)
            phase.points.append(await read_point(server, "whatsmeow", 1))
            if hole.open < 1 or hole.closed:
                phase.notes.append(f"after 1 session: {hole.closed} proxy connections closed")

            started = time.monotonic()
            jobs = [
                lambda n=n: create(http, server, f"wm-{run}-{n}", "whatsmeow", config)
                for n in range(1, count)
            ]
            ids += await gather_limited(jobs, 16)
            phase.create_s = time.monotonic() - started
            await wait_statuses(http, server, ids, {"initializing"}, 120, dialed(count))
            all_dialed = time.monotonic()
            await asyncio.sleep(settle)
            read_at = time.monotonic()
            point = await read_point(server, "whatsmeow", count)
            phase.last_reading = time.time()
            open_at_read, closed_at_read = hole.open, hole.closed
            found = await statuses(http, server)
            still = sum(found[i]["status"] == "initializing" for i in ids)
            oldest = read_at - hole.opened_at[0]
            newest = read_at - hole.opened_at[-1]
            point.note = join_notes(
                point.note,
                f"{still}/{count} initializing, {open_at_read} proxy connections open at the "
                f"reading; dials waiting {newest:.0f} to {oldest:.0f} s",
            )
            phase.points.append(point)
            phase.notes.append(
                f"{count - 1} sessions created in {phase.create_s:.1f} s (16 concurrent clients); "
                f"all dialing {all_dialed - started:.1f} s after the first create; "
                f"{hole.accepted} proxy connections accepted, {closed_at_read} closed by the "
                "reading"
            )
            if point.worker is None:
                phase.notes.append("no worker process found at the reading")
            # How long whatsmeow waits on a silent proxy (when the window allows it).
            if hole.closed == closed_at_read:
                hole.dial_ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hole.dial_ended.wait(), 90)
            if hole.closed > closed_at_read:
                phase.notes.append(
                    f"the first dial ended {time.monotonic() - hole.opened_at[0]:.0f} s after "
                    "it opened (whatsmeow's own timeout on a silent proxy)"
                )
                await asyncio.sleep(settle)
                found = await statuses(http, server)
                counts: dict[str, int] = {}
                for i in ids:
                    counts[found[i]["status"]] = counts.get(found[i]["status"], 0) + 1
                errors = {found[i]["lastError"] for i in ids} - {None}
                phase.notes.append(
                    f"{settle:.0f} s after that: statuses {counts}, last errors {sorted(errors)[:3]}, "
                    f"{hole.accepted} proxy connections accepted in all"
                )
    finally:
        # A session's stop waits for its dial to end; with the proxy gone every dial
        # ends at once, so the server's stop is quick.
        await hole.stop()
        wpids = worker_pids(server.pid) if server.process.poll() is None else []
        stop_started = time.monotonic()
        server.stop()
        phase.notes.append(
            f"the server stopped in {time.monotonic() - stop_started:.1f} s "
            f"(exit code {server.process.returncode})"
        )
        for _ in range(150):  # the server gives its workers 10 s to stop
            if not any(alive(wpid) for wpid in wpids):
                break
            await asyncio.sleep(0.1)
        else:
            still = [wpid for wpid in wpids if alive(wpid)]
            phase.notes.append(f"workers {still} were still running 15 s after the server")
        phase.notes += log_summary(server.log, phase.last_reading)
    return phase


async def mock_phase(work: Path, url: str, count: int, settle: float) -> Phase:
    phase = Phase("mock")
    server = Server(work, url, "mock")
    run = secrets.token_hex(3)
    ids: list[str] = []
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(headers={"X-API-Key": KEY}, timeout=timeout) as http:
            await server.wait_healthy(http)
            await check_empty(http, server)
            await asyncio.sleep(settle)
            phase.points.append(await read_point(server, "mock", 0))

            ids.append(await create(http, server, f"mk-{run}-0", "mock", {}))
            await wait_statuses(http, server, ids, {"ready"}, 60)
            await asyncio.sleep(settle)
            phase.points.append(await read_point(server, "mock", 1))

            started = time.monotonic()
            jobs = [
                lambda n=n: create(http, server, f"mk-{run}-{n}", "mock", {})
                for n in range(1, count)
            ]
            ids += await gather_limited(jobs, 16)
            phase.create_s = time.monotonic() - started
            await wait_statuses(http, server, ids, {"ready"}, 300)
            await asyncio.sleep(settle)
            point = await read_point(server, "mock", count)
            phase.last_reading = time.time()
            found = await statuses(http, server)
            ready = sum(found[i]["status"] == "ready" for i in ids)
            point.note = join_notes(point.note, f"{ready}/{count} ready")
            phase.points.append(point)
            phase.notes.append(
                f"{count - 1} sessions created and linked in {phase.create_s:.1f} s "
                "(16 concurrent clients)"
            )
    finally:
        stop_started = time.monotonic()
        server.stop()
        phase.notes.append(
            f"the server stopped in {time.monotonic() - stop_started:.1f} s "
            f"(exit code {server.process.returncode})"
        )
        phase.notes += log_summary(server.log, phase.last_reading)
    return phase


def log_summary(log: Path, last_reading: float | None) -> list[str]:
    """What the server (and the worker, on the same stderr) logged: counts by level and
    event for JSON lines, split at the last memory reading (epoch seconds) when given, and
    the first few other lines."""
    counts: dict[str, int] = {}
    other: list[str] = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                other.append(line.strip())
            continue
        if not isinstance(entry, dict):
            continue
        key = f"{entry.get('level')} {entry.get('event')}"
        if last_reading is not None and "timestamp" in entry:
            at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            key += " (after the last reading)" if at > last_reading else " (by the last reading)"
        counts[key] = counts.get(key, 0) + 1
    lines = [f"log: {count} x {key}" for key, count in sorted(counts.items())]
    if other:
        lines.append(f"log: {len(other)} other lines, e.g. {other[:3]}")
    return lines


def mb(value: float) -> str:
    return f"{value / MB:.1f}"


def report(phases: list[Phase]) -> None:
    print(
        f"\nResident memory (VmRSS) of the server and the whatsmeow workers, {os.cpu_count()} cores\n"
    )
    print("| engine | sessions | server MB | worker MB | total MB | worker threads | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        for p in phase.points:
            worker = mb(p.worker.rss) if p.worker else "-"
            threads = str(p.worker.threads) if p.worker else "-"
            print(
                f"| {p.engine} | {p.sessions} | {mb(p.server.rss)} | {worker} | "
                f"{mb(p.total)} | {threads} | {p.note} |"
            )
    print(
        "\n| engine | first session (0 -> 1) MB | per idle session (1 -> N) MB | of it, server MB | of it, worker MB | total at N MB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        zero, one, last = phase.points[0], phase.points[1], phase.points[-1]
        span = last.sessions - one.sessions
        server = (last.server.rss - one.server.rss) / span
        worker = (
            (last.worker.rss if last.worker else 0) - (one.worker.rss if one.worker else 0)
        ) / span
        print(
            f"| {phase.engine} ({last.sessions}) | {mb(one.total - zero.total)} | "
            f"{(server + worker) / MB:.2f} | {server / MB:.2f} | "
            f"{worker / MB:.2f} | {mb(last.total)} |"
        )
    for phase in phases:
        for note in phase.notes:
            print(f"\n- {phase.engine}: {note}")


async def run_phase(
    engine: str, work: Path, database_url: str | None, count: int, settle: float
) -> Phase:
    """One phase on a fresh database: a SQLite file, or a new PostgreSQL database."""
    phase_fn = whatsmeow_phase if engine == "whatsmeow" else mock_phase
    if database_url is None:
        return await phase_fn(work, f"sqlite+aiosqlite:///{work / engine}.db", count, settle)
    name, url = await fresh_postgres(database_url, engine)
    try:
        return await phase_fn(work, url, count, settle)
    finally:
        await drop_postgres(database_url, name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whatsmeow", type=int, default=100, help="0 to skip")
    parser.add_argument("--mock", type=int, default=1000, help="0 to skip")
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL (postgresql+asyncpg://...): each phase runs on a new database "
        "created next to this one and dropped after; default: a fresh SQLite file",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openwa-bench-engine-memory-"))
    phases: list[Phase] = []
    try:
        for engine, count in (("whatsmeow", args.whatsmeow), ("mock", args.mock)):
            if count > 1:
                phases.append(
                    await run_phase(engine, work, args.database_url, count, args.settle_s)
                )
    except BaseException:
        if phases:
            report(phases)
        print(f"server logs kept in {work}", file=sys.stderr)
        raise
    report(phases)
    if args.keep_logs:
        print(f"\nserver logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
