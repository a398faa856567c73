"""Memory per idle session: whatsmeow, Baileys, whatsapp-web.js (offline) and mock (linked).

Defaults: 100 whatsmeow, 50 Baileys and 3 whatsapp-web.js sessions without network, 1,000
mock sessions.

Starts the real server (`python -m openwa serve`, SQLite in a temporary directory unless
`--database-url` is given) once per engine, and reads the resident memory
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

baileys and webjs (the Node.js bridge, docs/bridge.md): the same black hole, the same
points (0, 1, N sessions; N = 50 and 3 by default), but the reading is the server's whole
process tree, excluding nothing: the server, its bridge processes (`node bridge.js`, one
per BAILEYS_SESSIONS_PER_WORKER / WEBJS_SESSIONS_PER_WORKER sessions) and everything
under them (whatsapp-web.js runs one Chromium per session, a dozen processes), plus any
process that left the tree (Chromium's crash handlers are reparented to init): the
server gets `OPENWA_BENCH_MARK=<random>` in its environment, which all of them inherit,
and /proc/*/environ finds them. Summed VmRSS counts pages shared between processes once
per process (Chromium's processes share most of theirs); PSS (/proc/<pid>/smaps_rollup)
divides each shared page among the processes that map it, so its sum does not (it also
shrinks when unrelated processes map the same files). A session is waiting in its dial
when it is `initializing` and, for Baileys, there are as many open `CONNECT
web.whatsapp.com:443` as sessions (one websocket each, all in the bridge process); for
whatsapp-web.js, when each browser's process tree holds an open one (found through the
socket inodes in /proc/net/tcp and /proc/<pid>/fd). Chromium also calls Google hosts
through the proxy; those are counted apart, not as dials. The bridge is installed once
(`npm ci`) into NODE_BRIDGE_DIR (the server gets this script's environment: point it at
an installed copy to skip the install). After the server's stop the script waits up to
30 s for every process it saw (pid and start time) and every process carrying the mark
to be gone, and kills and reports any left.

With `--database-url postgresql+asyncpg://user@host:port/db`, each phase runs on a new
database created on that server (through `db`, which must exist) and dropped after; the
connections to it are shown at each reading. whatsmeow keeps one PostgreSQL connection
per session in the worker, so N whatsmeow sessions need max_connections above N plus
the server's pool.

Usage: .venv/bin/python benchmarks/engine_memory.py [--whatsmeow 100] [--mock 1000]
       [--baileys 50] [--webjs 3] [--settle-s 5] [--database-url URL] [--keep-logs].
       A phase runs when its N is above 1. Prints Markdown tables.
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


def descendants(pid: int) -> list[int]:
    """Every process under `pid`, children first-found order."""
    found: list[int] = []
    for child in children(pid):
        found.append(child)
        found += descendants(child)
    return found


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pss(pid: int) -> int:
    """Proportional set size (bytes, /proc/<pid>/smaps_rollup): shared pages divided
    among the processes mapping them, so a sum over processes does not count them twice."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def start_time(pid: int) -> str | None:
    """The process' start time (field 22 of /proc/<pid>/stat): a pid with it is one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries `OPENWA_BENCH_MARK=<mark>`: everything the
    server started, however deep, even if reparented (Chromium's processes inherit it)."""
    needle = f"OPENWA_BENCH_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def sockets_of(pid: int) -> set[str]:
    """The socket inodes `pid` holds open."""
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    found.add(link[8:-1])
    except OSError:
        pass
    return found


def proxy_inodes(proxy_port: int) -> dict[int, str]:
    """Client side of every TCP connection to 127.0.0.1:`proxy_port`: local port -> inode."""
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(remote.rsplit(":", 1)[1], 16) == proxy_port:
                found[int(local.rsplit(":", 1)[1], 16)] = inode
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


@dataclass
class Dial:
    """One connection to the black hole: the client's port and its request line."""

    peer_port: int
    opened_at: float
    target: str | None = None  # "CONNECT web.whatsapp.com:443 HTTP/1.1"
    closed_at: float | None = None

    def connects_to(self, host_port: str) -> bool:
        return (self.target or "").split()[:2] == ["CONNECT", host_port]

    @property
    def host(self) -> str:
        """`CONNECT`'s host:port, or the host of a plain request (`GET http://host/...`)."""
        parts = (self.target or "").split()
        if len(parts) < 2:
            return "(no request)"
        if parts[0] == "CONNECT":
            return parts[1]
        return f"{parts[0]} {urlsplit(parts[1]).netloc or parts[1]}"


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
        self.dials: list[Dial] = []
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
        conn = Dial(writer.get_extra_info("peername")[1], time.monotonic())
        self.dials.append(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        head = b""
        try:
            while data := await reader.read(65536):
                if conn.target is None:  # the CONNECT request; never answered
                    head += data
                    if b"\n" in head:
                        conn.target = head.split(b"\n", 1)[0].decode(errors="replace").strip()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self.closed += 1
            conn.closed_at = time.monotonic()
            self.dial_ended.set()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    def open_to(self, target: str) -> list[Dial]:
        """The connections still open whose request is `CONNECT <target>`."""
        return [d for d in self.dials if d.closed_at is None and d.connects_to(target)]

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
        self.mark = secrets.token_hex(6)
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
            # Inherited by every process the server starts (bridges, Chromium): found by it.
            "OPENWA_BENCH_MARK": self.mark,
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
    tree_points: list[TreePoint] = field(default_factory=list)  # baileys and webjs


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
    try:
        async with http.post(server.base + "/api/sessions", json=body) as response:
            data = await response.json()
            if response.status != 201:
                raise RuntimeError(f"creating {name} answered {response.status}: {data}")
    except aiohttp.ServerDisconnectedError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(5)
        raise RuntimeError(
            f"the server went away while creating {name} (exit code "
            f"{server.process.returncode}, pid {server.pid}); see {server.log}"
        ) from None
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


WHATSAPP = "web.whatsapp.com:443"


@dataclass
class Group:
    """Processes added up: how many, VmRSS, PSS and threads."""

    procs: int = 0
    rss: int = 0
    pss: int = 0
    threads: int = 0

    def add(self, pid: int) -> None:
        with contextlib.suppress(OSError, KeyError):
            mem = memory(pid)
            self.procs += 1
            self.rss += mem.rss
            self.threads += mem.threads
            self.pss += pss(pid)


@dataclass
class TreePoint:
    """The server and every process under it: the bridges (node, children of the server
    running bridge.js), what runs under them (Chromium) and anything else."""

    engine: str
    sessions: int
    server: Group
    bridges: Group
    browsers: Group
    other: Group
    note: str = ""

    @property
    def groups(self) -> list[Group]:
        return [self.server, self.bridges, self.browsers, self.other]

    @property
    def rss(self) -> int:
        return sum(g.rss for g in self.groups)

    @property
    def pss(self) -> int:
        return sum(g.pss for g in self.groups)

    @property
    def procs(self) -> int:
        return sum(g.procs for g in self.groups)


def is_bridge(pid: int) -> bool:
    return any(part.endswith("bridge.js") for part in argv(pid))


def read_tree(server: Server, engine: str, sessions: int, seen: dict[int, str | None]) -> TreePoint:
    """RSS and PSS of the server's whole process tree, excluding nothing; every pid is
    remembered in `seen` (with its start time) for the check that all are gone at the end."""
    point = TreePoint(engine, sessions, Group(), Group(), Group(), Group())
    point.server.add(server.pid)
    tree = [server.pid]
    for child in children(server.pid):
        under = descendants(child)
        if is_bridge(child):
            point.bridges.add(child)
            for pid in under:
                point.browsers.add(pid)
        else:
            for pid in [child, *under]:
                point.other.add(pid)
        tree += [child, *under]
    for pid in tree:
        seen.setdefault(pid, start_time(pid))
    # Chromium's zygotes leave the tree (their parent is not the browser); they carry
    # the server's mark in their environment, so they are found and counted all the same.
    outside = sorted(set(marked(server.mark)) - set(tree))
    kinds: dict[str, int] = {}
    for pid in outside:
        args = argv(pid)
        if is_bridge(pid):
            point.bridges.add(pid)
        elif args and "chrom" in Path(args[0]).name:
            point.browsers.add(pid)
        else:
            point.other.add(pid)
        kind = next(
            (a for a in args if a.startswith("--type=")), Path(args[0]).name if args else "?"
        )
        kind += f", parent {parent(pid)}"
        kinds[kind] = kinds.get(kind, 0) + 1
        seen.setdefault(pid, start_time(pid))
    if outside:
        point.note = f"{len(outside)} process(es) outside the server's tree, counted: {kinds}"
    return point


def browsers_dialing(server: Server, hole: BlackHole) -> dict[int, int]:
    """For each process under a bridge that is a child of it (a Chromium browser): how
    many of the open CONNECTs to web.whatsapp.com:443 its process tree holds."""
    inodes = proxy_inodes(hole.port)
    wanted = {inodes[d.peer_port] for d in hole.open_to(WHATSAPP) if d.peer_port in inodes}
    found: dict[int, int] = {}
    for bridge in (pid for pid in children(server.pid) if is_bridge(pid)):
        for browser in children(bridge):
            held = set()
            for pid in [browser, *descendants(browser)]:
                held |= sockets_of(pid)
            found[browser] = len(held & wanted)
    return found


def sessions_dialing(server: Server, hole: BlackHole, engine: str) -> int:
    """How many sessions are waiting in a dial to WhatsApp through the black hole: for
    Baileys the open CONNECTs to web.whatsapp.com:443 (one websocket each, all in the
    bridge process), for whatsapp-web.js the browsers holding at least one of them
    (Chromium also calls Google hosts through the proxy: not counted)."""
    if engine == "webjs":
        return sum(1 for held in browsers_dialing(server, hole).values() if held)
    return len(hole.open_to(WHATSAPP))


async def bridge_phase(work: Path, url: str, engine: str, count: int, settle: float) -> Phase:
    """Baileys or whatsapp-web.js sessions waiting in their dial to a black-hole proxy."""
    phase = Phase(engine)
    hole = BlackHole()
    await hole.start()
    config = {"proxy": hole.url}
    server = Server(work, url, engine)
    run = secrets.token_hex(3)
    ids: list[str] = []
    seen: dict[int, str | None] = {}
    # A whatsapp-web.js session starts a browser first, which is slow on a loaded machine.
    wait_s = 60 if engine == "baileys" else 60 + 30 * count
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(headers={"X-API-Key": KEY}, timeout=timeout) as http:
            await server.wait_healthy(http)
            await check_empty(http, server)
            await asyncio.sleep(settle)
            phase.tree_points.append(read_tree(server, engine, 0, seen))

            def dialing(n: int) -> Callable[[], bool]:
                return lambda: sessions_dialing(server, hole, engine) >= n

            started = time.monotonic()
            ids.append(await create(http, server, f"{engine}-{run}-0", engine, config))
            await wait_statuses(http, server, ids, {"initializing"}, wait_s, dialing(1))
            phase.notes.append(
                f"the first session dialed {time.monotonic() - started:.1f} s after its create"
            )
            await asyncio.sleep(settle)
            point = read_tree(server, engine, 1, seen)
            point.note = join_notes(point.note, await check_dials(http, server, hole, engine, ids))
            phase.tree_points.append(point)

            started = time.monotonic()
            jobs = [
                lambda n=n: create(http, server, f"{engine}-{run}-{n}", engine, config)
                for n in range(1, count)
            ]
            ids += await gather_limited(jobs, 16)
            phase.create_s = time.monotonic() - started
            await wait_statuses(http, server, ids, {"initializing"}, wait_s, dialing(count))
            all_dialed = time.monotonic()
            await asyncio.sleep(settle)
            point = read_tree(server, engine, count, seen)
            phase.last_reading = time.time()
            point.note = join_notes(point.note, await check_dials(http, server, hole, engine, ids))
            phase.tree_points.append(point)
            hosts: dict[str, int] = {}
            for dial in hole.dials:
                hosts[dial.host] = hosts.get(dial.host, 0) + 1
            phase.notes.append(
                f"{count - 1} sessions created in {phase.create_s:.1f} s (16 concurrent clients); "
                f"all dialing {all_dialed - started:.1f} s after the first create; proxy "
                f"connections accepted by the reading, by CONNECT target: {hosts}"
            )
            # How long the library waits on a silent proxy.
            wa_closed = [d for d in hole.dials if d.connects_to(WHATSAPP) and d.closed_at]
            if not wa_closed:
                hole.dial_ended.clear()
                deadline = time.monotonic() + 45
                while time.monotonic() < deadline and not wa_closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(hole.dial_ended.wait(), deadline - time.monotonic())
                    hole.dial_ended.clear()
                    wa_closed = [d for d in hole.dials if d.connects_to(WHATSAPP) and d.closed_at]
            if wa_closed:
                first = min(wa_closed, key=lambda d: d.opened_at)
                assert first.closed_at is not None
                phase.notes.append(
                    f"the first dial to {WHATSAPP} to end was closed by the client "
                    f"{first.closed_at - first.opened_at:.0f} s after it opened; then: "
                    + await check_dials(http, server, hole, engine, ids)
                )
            else:
                oldest = min(d.opened_at for d in hole.dials if d.connects_to(WHATSAPP))
                phase.notes.append(
                    f"no dial to {WHATSAPP} had ended {time.monotonic() - oldest:.0f} s after "
                    "the first opened"
                )
    finally:
        await hole.stop()
        with contextlib.suppress(Exception):
            if server.process.poll() is None:
                read_tree(server, engine, -1, seen)  # the last pids, for the check below
        stop_started = time.monotonic()
        server.stop()
        phase.notes.append(
            f"the server stopped in {time.monotonic() - stop_started:.1f} s "
            f"(exit code {server.process.returncode})"
        )
        phase.notes.append(await check_gone(server, seen))
        phase.notes += log_summary(server.log, phase.last_reading)
    return phase


async def check_dials(
    http: aiohttp.ClientSession, server: Server, hole: BlackHole, engine: str, ids: list[str]
) -> str:
    """Whether every session was still waiting in its dial right after a reading."""
    found = await statuses(http, server)
    waiting = sum(found[i]["status"] == "initializing" for i in ids)
    now = time.monotonic()
    wa = hole.open_to(WHATSAPP)
    ages = (
        f"{now - max(d.opened_at for d in wa):.0f} to {now - min(d.opened_at for d in wa):.0f} s"
        if wa
        else "-"
    )
    text = f"{waiting}/{len(ids)} initializing, {len(wa)} CONNECTs to {WHATSAPP} open (aged {ages})"
    if engine == "webjs":
        held = browsers_dialing(server, hole)
        text += f", {sum(1 for n in held.values() if n)}/{len(held)} browsers holding one"
    closed = sum(1 for d in hole.dials if d.connects_to(WHATSAPP) and d.closed_at)
    if closed:
        text += f", {closed} such dials closed before"
    return text


async def check_gone(server: Server, seen: dict[int, str | None]) -> str:
    """After the server's stop: wait up to 30 s for every process ever seen in its tree
    (same pid, same start time) and every process carrying its mark to be gone; kill
    (SIGKILL, by pid) any left and say so."""

    def left() -> list[int]:
        same = {pid for pid, started in seen.items() if alive(pid) and start_time(pid) == started}
        return sorted(same | set(marked(server.mark)))

    still = left()
    for _ in range(150):  # 30 s; the bridges give their browsers a few seconds each
        if not still:
            break
        await asyncio.sleep(0.2)
        still = left()
    if not still:
        return f"all {len(seen)} processes seen in the server's tree were gone after its stop, none left carrying its mark"
    names = {pid: " ".join(argv(pid))[:80] for pid in still}
    for pid in still:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return f"LEFT RUNNING 30 s after the server stopped, killed now: {names}"


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


def report(all_phases: list[Phase]) -> None:
    phases = [phase for phase in all_phases if phase.points]
    if phases:
        report_workers(phases)
    bridged = [phase for phase in all_phases if phase.tree_points]
    if bridged:
        report_trees(bridged)
    for phase in all_phases:
        for note in phase.notes:
            print(f"\n- {phase.engine}: {note}")


def report_trees(phases: list[Phase]) -> None:
    print(
        "\nThe server and every process under it (bridges: node bridge.js; under them: "
        f"Chromium), VmRSS summed and PSS summed, {os.cpu_count()} cores\n"
    )
    print(
        "| engine | sessions | processes | server RSS MB | bridge RSS MB (processes) | "
        "under the bridges RSS MB (processes) | total RSS MB | total PSS MB | "
        "bridge threads | note |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        for p in phase.tree_points:
            other = f" (+ {mb(p.other.rss)} MB in {p.other.procs} other)" if p.other.procs else ""
            print(
                f"| {p.engine} | {p.sessions} | {p.procs} | {mb(p.server.rss)} | "
                f"{mb(p.bridges.rss)} ({p.bridges.procs}) | {mb(p.browsers.rss)} "
                f"({p.browsers.procs}){other} | {mb(p.rss)} | {mb(p.pss)} | "
                f"{p.bridges.threads} | {p.note} |"
            )
    print(
        "\n| engine (N) | first session (0 -> 1) RSS MB | per idle session (1 -> N) RSS MB | "
        "of it, server | of it, bridge | of it, under the bridge | first session PSS MB | "
        "per idle session PSS MB | total at N RSS MB | total at N PSS MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        zero, one, last = phase.tree_points[0], phase.tree_points[1], phase.tree_points[-1]
        span = last.sessions - one.sessions

        def per(
            value: Callable[[TreePoint], int],
            one: TreePoint = one,
            last: TreePoint = last,
            span: int = span,
        ) -> str:
            return f"{(value(last) - value(one)) / span / MB:.2f}"

        print(
            f"| {phase.engine} ({last.sessions}) | {mb(one.rss - zero.rss)} | "
            f"{per(lambda p: p.rss)} | {per(lambda p: p.server.rss)} | "
            f"{per(lambda p: p.bridges.rss)} | {per(lambda p: p.browsers.rss + p.other.rss)} | "
            f"{mb(one.pss - zero.pss)} | {per(lambda p: p.pss)} | {mb(last.rss)} | "
            f"{mb(last.pss)} |"
        )


def report_workers(phases: list[Phase]) -> None:
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


async def run_phase(
    engine: str, work: Path, database_url: str | None, count: int, settle: float
) -> Phase:
    """One phase on a fresh database: a SQLite file, or a new PostgreSQL database."""
    phases: dict[str, Callable[[Path, str, int, float], Awaitable[Phase]]] = {
        "whatsmeow": whatsmeow_phase,
        "mock": mock_phase,
        "baileys": lambda *args: bridge_phase(args[0], args[1], "baileys", *args[2:]),
        "webjs": lambda *args: bridge_phase(args[0], args[1], "webjs", *args[2:]),
    }
    phase_fn = phases[engine]
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
    parser.add_argument("--baileys", type=int, default=50, help="0 to skip")
    parser.add_argument(
        "--webjs", type=int, default=3, help="0 to skip; each session is a whole browser"
    )
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
        for engine, count in (
            ("whatsmeow", args.whatsmeow),
            ("mock", args.mock),
            ("baileys", args.baileys),
            ("webjs", args.webjs),
        ):
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
