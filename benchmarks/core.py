"""The core paths of OpenWA, each as a ratio to a baseline measured in the same run.

`.venv/bin/python benchmarks/core.py [--databases sqlite,postgres] [--runs 3] [--quick]
[--rows 1,2]`

Every row of every run starts a fresh server (`python -m openwa serve`, mock engine,
`MOCK_ACK_DELAY_MS=0`, `LOG_LEVEL=warning`) on a fresh database (a SQLite file in a
temporary directory, or a PostgreSQL database created on 127.0.0.1:5432 and dropped
afterwards); its baseline is measured right after it, on a fresh database of the same
kind. Rows:

1. `GET /api/sessions/{id}` of a ready mock session with the admin key, 32 clients;
   baseline: a bare FastAPI route on uvicorn returning a constant envelope.
2. Accepted `POST .../messages/text` (202) from A to B, 32 clients, each with a `sendAt`
   one hour ahead, so that what is measured is the accept (validation, message and outbox
   rows committed), not the sending that would otherwise run beside it; baseline: a bare
   FastAPI route doing one INSERT + COMMIT per request on the same kind of database, through
   SQLAlchemy Core on OpenWA's engine factory, and again through the driver alone (a
   second row with the same figure: the floor without SQLAlchemy's per-transaction cost).
3. Drain: A's queue of 1,500 texts to B, all posted with one `sendAt` a few seconds
   ahead (after the last post is in), so the queue is full when it becomes due; the clock
   runs from that `sendAt` to the `timestamp` of the last `message.sent` in the event
   log. Goal: 1,000 msg/s.
4. Webhook deliveries: 300 `mock/inbound` messages to one session (32 clients) fanned out
   to its 10 webhooks for `message.received`: 3,000 deliveries, from the first inbound
   post to the last delivery received; baseline: 3,000 signed POSTs of a like envelope to
   the same receiver from 10 sequential aiohttp loops (the worker keeps one delivery in
   flight per webhook).
5. End to end: 2,000 texts from A to B (32 clients, no `sendAt`) until B's webhook has
   received all 2,000 `message.received`, from the first post. Goal: 500 events/s.

Rows 2, 4 and 5 also print how busy the server was over the measured window and its CPU
time per item (and the same for their baselines: the bare route's process, this
process's aiohttp loops), read from /proc: a server near 100 % busy is bound by its one
core, and the baselines' CPU per item is the floor of the same work.

The webhook receiver is a process of its own (benchmarks/receiver.py, see why there),
the bare app too (benchmarks/baselines.py). A row's figure is the median of its runs;
its ratio is the median of the runs' ratios (each run's figure over that run's
baseline). A row that runs out of time prints "timed out" and the next one goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from bench_server import (
    KEY,
    MOCK_ENV,
    cpu_seconds,
    free_port,
    fresh_database,
    iso,
    link_mock,
    postgres_cpu_seconds,
    received,
    run_clients,
    serve,
    signed_post_loops,
    spawn,
    stop,
    wait_healthy,
    webhook_receiver,
)

HERE = Path(__file__).resolve().parent
CLIENTS = 32
WEBHOOKS = 10
SENDER = "+4915112345678"  # who the mock inbound messages are from
SERVER_ENV = {**MOCK_ENV, "MOCK_AUTH_DELAY_MS": "100"}


@dataclass(frozen=True)
class Counts:
    get: int = 3000
    accept: int = 2000
    drain: int = 1500
    inbound: int = 300
    e2e: int = 2000


QUICK = Counts(get=300, accept=200, drain=150, inbound=30, e2e=200)


@dataclass
class Figure:
    """One row in one run."""

    value: float
    baseline: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.value / self.baseline


class Failed(Exception):
    """A row could not be measured (the reason is printed in its place)."""


@dataclass
class Bench:
    """What a run's rows share: the database kind, the HTTP client, the receiver."""

    database: str
    counts: Counts
    http: aiohttp.ClientSession
    receiver: str
    logs: Path
    profile: Path | None = None  # py-spy profiles of the server's measured windows go here
    accept_rate: float | None = None  # row 2 of this run, to size row 3's head start
    program: list[str] | None = None  # runs instead of `-m openwa` (fanout_ceiling.py)
    server: Any = None  # the process of the server running now
    _started: int = field(default=0)

    @contextlib.asynccontextmanager
    async def process(
        self, label: str, start: Callable[[int, str, Any], Any]
    ) -> AsyncIterator[str]:
        """A server on a fresh database, healthy; yields its base URL, stops it after."""
        self._started += 1
        log_path = self.logs / f"{self._started:03d}-{label}.log"
        async with fresh_database(self.database) as url:
            port = free_port()
            with log_path.open("wb") as log:
                process = self.server = start(port, url, log)
                try:
                    base = f"http://127.0.0.1:{port}"
                    await wait_healthy(self.http, base, process, log_path)
                    yield base
                finally:
                    stop(process)

    def openwa(self) -> contextlib.AbstractAsyncContextManager[str]:
        def start(port: int, url: str, log: Any) -> Any:
            data_dir = tempfile.mkdtemp(prefix="openwa-bench-", dir=self.logs)
            env = {**SERVER_ENV, "DATABASE_URL": url, "DATA_DIR": data_dir}
            return serve(port, env, log, program=self.program)

        return self.process("openwa", start)

    def bare(self) -> contextlib.AbstractAsyncContextManager[str]:
        def start(port: int, url: str, log: Any) -> Any:
            script = str(HERE / "baselines.py")
            return spawn([script, "--port", str(port), "--database-url", url], {}, log)

        return self.process("baseline", start)

    async def call(
        self, method: str, url: str, expect: int, body: dict[str, Any] | None = None
    ) -> Any:
        async with self.http.request(method, url, json=body) as response:
            if response.status != expect:
                raise Failed(f"{method} {url} answered {response.status}: {await response.text()}")
            return await response.json() if response.status != 204 else None

    async def rate(self, total: int, call: Callable[[int], Awaitable[object]]) -> float:
        _, seconds = await run_clients(CLIENTS, total, call)
        return total / seconds

    def cpu_clock(self, label: str = "server") -> Callable[[int], str]:
        """Starts counting the server's CPU time; the function returned says, when the
        window ends, how busy the server was and its CPU time per item (`n` items)."""
        started, used = time.monotonic(), cpu_seconds(self.server.pid)
        postgres = self.database == "postgres"
        database = postgres_cpu_seconds() if postgres else 0.0
        spy = self._spy(label)

        def per_item(n: int) -> str:
            wall, cpu = time.monotonic() - started, cpu_seconds(self.server.pid) - used
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
                spy.wait(60)
            said = f"{label} {1000 * cpu / n:.2f} ms CPU per item, {100 * cpu / wall:.0f} % busy"
            if postgres:
                # The database's work runs on the same two cores as everything else.
                said += f", PostgreSQL {1000 * (postgres_cpu_seconds() - database) / n:.2f} ms"
            return said

        return per_item

    def _spy(self, label: str) -> subprocess.Popen[bytes] | None:
        """py-spy sampling the server (its native frames left out), when `--profile` asks."""
        if self.profile is None:
            return None
        self.profile.mkdir(parents=True, exist_ok=True)
        out = self.profile / f"{self.database}-{time.time_ns()}-{label}.txt"
        return subprocess.Popen(
            [
                *(os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(self.server.pid)),
                *("--format", "raw", "--rate", "250", "--nonblocking", "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def hook(self, tag: str) -> str:
        return f"{self.receiver}/hook/{tag}"

    async def received(self, tag: str, expected: int) -> float:
        return await received(self.http, self.receiver, tag, expected)


async def link_pair(b: Bench, base: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Mock sessions A and B: their records and the chat id that reaches B."""
    a = await link_mock(b.http, base, "a")
    session_b = await link_mock(b.http, base, "b")
    return a, session_b, "+" + session_b["phoneNumber"]


# --- the rows ------------------------------------------------------------------------


async def get_session(b: Bench) -> Figure:
    async with b.openwa() as base:
        a = await link_mock(b.http, base, "a")
        url = f"{base}/api/sessions/{a['id']}"
        value = await b.rate(b.counts.get, lambda _: b.call("GET", url, 200))
    async with b.bare() as base:
        baseline = await b.rate(b.counts.get, lambda _: b.call("GET", base + "/const", 200))
    return Figure(value, baseline)


async def accept_text(b: Bench) -> Figure:
    later = iso(time.time() + 3600)
    async with b.openwa() as base:
        a, _, to_b = await link_pair(b, base)
        url = f"{base}/api/sessions/{a['id']}/messages/text"

        def post(i: int) -> Awaitable[object]:
            return b.call("POST", url, 202, {"chatId": to_b, "text": f"bench {i}", "sendAt": later})

        clock = b.cpu_clock()
        value = await b.rate(b.counts.accept, post)
        used = clock(b.counts.accept)
    b.accept_rate = value
    async with b.bare() as base:
        clock = b.cpu_clock("bare route")
        baseline = await b.rate(
            b.counts.accept,
            lambda i: b.call("POST", base + "/insert", 202, {"chatId": to_b, "text": f"b {i}"}),
        )
        used += "; " + clock(b.counts.accept)
    return Figure(value, baseline, note=used)


async def accept_vs_raw(b: Bench) -> Figure:
    """Row 2's figure of this run against the insert route without SQLAlchemy."""
    if b.accept_rate is None:
        raise Failed("no accepted rate in this run")
    async with b.bare() as base:
        baseline = await b.rate(
            b.counts.accept,
            lambda i: b.call("POST", base + "/insert-raw", 202, {"chatId": "+1", "text": f"b {i}"}),
        )
    return Figure(b.accept_rate, baseline)


async def drain(b: Bench) -> Figure:
    total = b.counts.drain
    async with b.openwa() as base:
        a, _, to_b = await link_pair(b, base)
        url = f"{base}/api/sessions/{a['id']}/messages/text"
        # Due when every post is in: the posting time at 60 % of row 2's rate, plus 3 s.
        head_start = total / (0.6 * (b.accept_rate or 50.0)) + 3.0
        send_at = time.time() + head_start
        body = {"chatId": to_b, "sendAt": iso(send_at)}

        def post(i: int) -> Awaitable[Any]:
            return b.call("POST", url, 202, {**body, "text": f"drain {i}"})

        await run_clients(CLIENTS, total - 1, post)
        # Posted alone and last, so it is the last of the queue (due order, then id).
        last_id = (await post(total - 1))["data"]["id"]
        if time.time() > send_at - 0.2:
            raise Failed(f"posting the queue took longer than its {head_start:.1f} s head start")
        await asyncio.sleep(send_at - time.time())
        clock = b.cpu_clock()
        status = ""
        while status not in ("sent", "delivered", "read", "played"):
            await asyncio.sleep(0.5)
            found = await b.call("GET", f"{url.rsplit('/', 1)[0]}/{last_id}", 200)
            status = found["data"]["status"]
            if status == "failed":
                raise Failed(f"the last message failed: {found['data'].get('error')}")
        # The window runs up to half a second past the last send (the poll above).
        cpu = clock(total)
        stamps = await sent_timestamps(b, base, a["id"])
    if len(stamps) != total:
        raise Failed(f"{len(stamps)} message.sent events for {total} messages")
    first, last = min(stamps), max(stamps)
    return Figure(
        total / (last - send_at), note=f"first sent {first - send_at:.2f} s after sendAt; {cpu}"
    )


async def sent_timestamps(b: Bench, base: str, session_id: str) -> list[float]:
    """The `timestamp` of every `message.sent` of the session, from the event log."""
    stamps: list[float] = []
    cursor = 0
    while True:
        query = f"after={cursor}&events=message.sent&sessions={session_id}&limit=1000"
        page = (await b.call("GET", f"{base}/api/events?{query}", 200))["data"]
        if not page["events"]:
            return stamps
        stamps += [datetime.fromisoformat(e["timestamp"]).timestamp() for e in page["events"]]
        cursor = page["nextCursor"]


async def webhook_fanout(b: Bench) -> Figure:
    inbound = b.counts.inbound
    total = inbound * WEBHOOKS
    tag = secrets.token_hex(6)
    async with b.openwa() as base:
        a = await link_mock(b.http, base, "a")
        hooks = f"{base}/api/sessions/{a['id']}/webhooks"
        for _ in range(WEBHOOKS):
            await b.call("POST", hooks, 201, {"url": b.hook(tag), "events": ["message.received"]})
        url = f"{base}/api/sessions/{a['id']}/mock/inbound"
        clock = b.cpu_clock()
        started, _ = await run_clients(
            CLIENTS,
            inbound,
            lambda i: b.call("POST", url, 202, {"from": SENDER, "text": f"in {i}"}),
        )
        value = total / (await b.received(tag, total) - started)
        used = clock(total)
    baseline, loops = await signed_post_loops(b.http, b.receiver, total, WEBHOOKS)
    return Figure(value, baseline, note=f"{used}; {loops}")


async def end_to_end(b: Bench) -> Figure:
    total = b.counts.e2e
    tag = secrets.token_hex(6)
    async with b.openwa() as base:
        a, session_b, to_b = await link_pair(b, base)
        hook = {"url": b.hook(tag), "events": ["message.received"]}
        await b.call("POST", f"{base}/api/sessions/{session_b['id']}/webhooks", 201, hook)
        url = f"{base}/api/sessions/{a['id']}/messages/text"
        clock = b.cpu_clock()
        started, _ = await run_clients(
            CLIENTS, total, lambda i: b.call("POST", url, 202, {"chatId": to_b, "text": f"e {i}"})
        )
        value = total / (await b.received(tag, total) - started)
        return Figure(value, note=clock(total))


@dataclass(frozen=True)
class Row:
    label: str
    unit: str
    baseline: str
    goal: str
    met: Callable[[float, float | None], bool]
    measure: Callable[[Bench], Awaitable[Figure]]
    timeout_s: float


def _ratio_goal(_: float, ratio: float | None) -> bool:
    return ratio is not None and ratio >= 0.5


ROWS = [
    Row(
        "`GET /api/sessions/{{id}}` with a key, 32 clients",
        "req/s",
        "bare FastAPI route on uvicorn returning a constant envelope",
        "ratio >= 0.5",
        _ratio_goal,
        get_session,
        120,
    ),
    Row(
        "accepted `POST .../messages/text` (`sendAt` +1 h), 32 clients",
        "/s",
        "bare FastAPI route, one INSERT + COMMIT per request",
        "ratio >= 0.5",
        _ratio_goal,
        accept_text,
        180,
    ),
    Row(
        "the same accepted posts",
        "/s",
        "the same route through the driver alone (aiosqlite / asyncpg)",
        "ratio >= 0.5",
        _ratio_goal,
        accept_vs_raw,
        120,
    ),
    Row(
        "drain: one session's pre-filled queue of {drain} texts to another mock session",
        "msg/s",
        "",
        ">= 1,000 msg/s",
        lambda value, _: value >= 1000,
        drain,
        300,
    ),
    Row(
        "webhook deliveries: {inbound} inbound messages to 10 webhooks of one session",
        "/s",
        "aiohttp POST loops (10) to the same receiver",
        "ratio >= 0.5",
        _ratio_goal,
        webhook_fanout,
        180,
    ),
    Row(
        "end to end: {e2e} texts A to B (32 clients) to B's webhook as `message.received`",
        "events/s",
        "",
        ">= 500 events/s",
        lambda value, _: value >= 500,
        end_to_end,
        300,
    ),
]


async def measure(row: Row, b: Bench) -> Figure | str:
    try:
        return await asyncio.wait_for(row.measure(b), row.timeout_s)
    except TimeoutError:
        return "timed out"
    except (Failed, RuntimeError, aiohttp.ClientError) as error:
        return f"failed: {error}"


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def table(
    database: str, counts: Counts, results: dict[str, list[Figure | str]], rows: list[Row]
) -> str:
    lines = [
        f"### {database}",
        "",
        "| path | OpenWA | baseline in the same run | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    details = []
    for row in rows:
        label = row.label.format(**vars(counts))
        runs = results[row.label]
        figures = [f for f in runs if isinstance(f, Figure)]
        details.append(
            f"- {label}: "
            + "; ".join(
                f
                if isinstance(f, str)
                else _num(f.value)
                + (f" vs {_num(f.baseline)}" if f.baseline is not None else "")
                + (f" ({f.note})" if f.note else "")
                for f in runs
            )
        )
        if len(figures) < len(runs) or not figures:
            why = next(f for f in runs if isinstance(f, str))
            lines.append(f"| {label} | {why} | | | {row.goal} | no |")
            continue
        value = statistics.median(f.value for f in figures)
        ratios = [f.ratio for f in figures if f.ratio is not None]
        ratio = statistics.median(ratios) if ratios else None
        base = ""
        if row.baseline:
            base = f"{row.baseline}: {_num(statistics.median(f.baseline or 0 for f in figures))} {row.unit}"
        ratio_text = f"{ratio:.2f}" if ratio is not None else ""
        met = "yes" if row.met(value, ratio) else "no"
        lines.append(
            f"| {label} | {_num(value)} {row.unit} | {base} | {ratio_text} | {row.goal} | {met} |"
        )
    return "\n".join([*lines, "", "Runs (OpenWA vs baseline):", *details])


async def bench_database(
    database: str,
    runs: int,
    counts: Counts,
    http: aiohttp.ClientSession,
    receiver: str,
    logs: Path,
    rows: list[Row],
    profile: Path | None = None,
) -> str:
    results: dict[str, list[Figure | str]] = {row.label: [] for row in rows}
    for run in range(runs):
        b = Bench(database, counts, http, receiver, logs, profile)
        for row in rows:
            figure = await measure(row, b)
            results[row.label].append(figure)
            shown = figure if isinstance(figure, str) else _num(figure.value)
            print(f"  {database} run {run + 1}: {row.label.format(**vars(counts))}: {shown}")
    return table(database, counts, results, rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run with small counts")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a py-spy profile (raw, collapsed stacks) of each measured window here;"
        " py-spy from PATH or $PY_SPY",
    )
    parser.add_argument(
        "--rows", default="", help="comma-separated row numbers from 1 (default: every row)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the servers' logs and data here (default: removed)"
    )
    args = parser.parse_args()
    rows = [ROWS[int(n) - 1] for n in args.rows.split(",") if n] or ROWS
    counts, runs = (QUICK, 1) if args.quick else (Counts(), args.runs)
    tables = []
    with tempfile.TemporaryDirectory(prefix="openwa-core-bench-") as directory:
        logs = Path(directory)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            logs = args.keep
        # Idle connections are let go before uvicorn's 5 s keep-alive ends them: a call
        # made on one just as the server closes it fails ("Server disconnected"), and
        # aiohttp sends a POST again only on a connection it made itself.
        connector = aiohttp.TCPConnector(limit=CLIENTS + WEBHOOKS, keepalive_timeout=2)
        async with (
            aiohttp.ClientSession(headers={"X-API-Key": KEY}, connector=connector) as http,
            webhook_receiver(http) as receiver,
        ):
            for database in args.databases.split(","):
                tables.append(
                    await bench_database(
                        database, runs, counts, http, receiver, logs, rows, args.profile
                    )
                )
    print(f"\n{runs} run(s), median shown; {os.cpu_count()} cores\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    asyncio.run(main())
