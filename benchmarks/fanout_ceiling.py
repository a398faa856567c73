"""How far any delivery design that writes nothing per delivery could take the fan-out row.

`.venv/bin/python benchmarks/fanout_ceiling.py [--databases sqlite,postgres] [--runs 3]
[--profile DIR] [--inbound 300]`

Issue 10's fan-out goal (row 5 of core.py: 300 inbound messages to 10 webhooks of one
session, at half the rate of bare aiohttp loops) is missed, and the rebuild proposed for
it keeps a cursor per (webhook, session) instead of a row per delivery. Before building
it, this measures its ceiling: the same row against a server whose deliveries touch no
database at all. The inbound requests, message rows and event rows are written as
always, and the webhooks matching each event are read in its transaction as always; but
instead of delivery rows, the events are handed in memory, once committed, to one
posting loop per webhook, which signs and POSTs them with the worker's own `_post` and
records nothing. No crash safety, no retries, no leases: a design with those can only be
slower. Each run measures the real server and the probe back to back, each with its own
baseline (10 aiohttp loops in this process, as in core.py).

A second probe (`probe2`) asks the same of a layout with deliveries in a process of
their own, the one way left to use the machine's second core: the server hands each
committed event (its body once, and the ids of the webhooks it goes to) down a pipe to a
poster process, which signs and POSTs with the worker's own `_post` and records nothing.

`python benchmarks/fanout_ceiling.py serve --port N` is the probe server itself: the
patches below, then `openwa serve` (`FANOUT_PROBE_POSTER=process` for the second probe);
`python benchmarks/fanout_ceiling.py poster` is the second probe's poster. Nothing here
is used outside the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve()


@dataclass(frozen=True)
class _Target:
    """One event for one webhook, as the posting loop needs it."""

    hook: SimpleNamespace
    event_id: str
    body: bytes
    cursor: int = 0
    session_id: str = ""
    event: str = ""


class _Probe:
    """Per-webhook queues and posting loops, fed from the fan-out once its events commit."""

    def __init__(self) -> None:
        self.worker: Any = None
        self.queues: dict[str, asyncio.Queue[_Target]] = {}
        self.loops: list[asyncio.Task[None]] = []
        self.recording: set[asyncio.Task[None]] = set()

    def push(self, targets: list[_Target]) -> None:
        for target in targets:
            queue = self.queues.get(target.hook.id)
            if queue is None:
                queue = self.queues[target.hook.id] = asyncio.Queue()
                self.loops.append(asyncio.create_task(self._post_loop(queue)))
            queue.put_nowait(target)

    async def _post_loop(self, queue: asyncio.Queue[_Target]) -> None:
        """Posts what the webhook's queue holds, a round at a time (at most a lane's
        round of 100, what is there when the round starts): probe3 and probe4 read the
        event log once per round, as a stream would, and record each 20 successes and
        the rest at the round's end, as the worker does."""
        from openwa.webhooks.worker import _Body

        poster = os.environ.get("FANOUT_PROBE_POSTER")
        records = poster in ("records", "runs")
        write = _write_run if poster == "runs" else _write_successes
        while True:
            round_ = [await queue.get()]
            while not queue.empty() and len(round_) < _STREAM_READ:
                round_.append(queue.get_nowait())
            if records:
                await _stream_read(self.worker, round_[0].cursor - 1)
            done: list[tuple[_Target, int, int]] = []
            for target in round_:
                answer = await self.worker._post(target.hook, _Body(target.event_id, target.body))
                if records:
                    done.append((target, answer.status or 0, answer.duration_ms))
                if len(done) >= _RECORD_BATCH or (done and target is round_[-1]):
                    batch, done = done, []
                    task = asyncio.create_task(self.worker._results.run(partial(write, batch)))
                    self.recording.add(task)
                    task.add_done_callback(self.recording.discard)


# probe3: what a delivery stream would still write and read: a row per success, written
# a batch at a time with the position of its webhook's stream, and a read of the event
# log per round of a stream.
_RECORD_BATCH = 20
_STREAM_READ = 100


async def _stream_read(worker: Any, after: int) -> None:
    from sqlalchemy import select

    from openwa.db.models import EventRow

    async with worker._read() as db:
        query = (
            select(EventRow.cursor, EventRow.session_id, EventRow.event)
            .where(EventRow.cursor > after)
            .order_by(EventRow.cursor)
            .limit(_STREAM_READ)
        )
        (await db.execute(query)).all()


_RUNS_TABLE = """CREATE TABLE IF NOT EXISTS bench_delivery_runs (
    id INTEGER PRIMARY KEY, webhook_id TEXT, first_cursor BIGINT, last_cursor BIGINT,
    at TEXT, results TEXT)"""


async def _write_run(batch: list[tuple[_Target, int, int]], db: Any) -> None:
    """probe4: the batch's successes as one row (each delivery's event, status code and
    time in a JSON array), with the stream's position."""
    import orjson
    from sqlalchemy import text, update

    from openwa.db.base import table_of
    from openwa.db.models import WebhookRow
    from openwa.kit.clock import utcnow

    now = utcnow()
    if not _RUNS_MADE:
        await db.execute(
            text(_RUNS_TABLE.replace("INTEGER PRIMARY KEY", _SERIAL[db.bind.dialect.name]))
        )
        _RUNS_MADE.append(True)
    results = orjson.dumps([[t.cursor, t.event_id, status, ms] for t, status, ms in batch])
    await db.execute(
        text(
            "INSERT INTO bench_delivery_runs (webhook_id, first_cursor, last_cursor, at, results)"
            " VALUES (:w, :f, :l, :at, :r)"
        ),
        {
            "w": batch[0][0].hook.id,
            "f": batch[0][0].cursor,
            "l": batch[-1][0].cursor,
            "at": now.isoformat(),
            "r": results.decode(),
        },
    )
    hooks = table_of(WebhookRow)
    await db.execute(update(hooks).where(hooks.c.id == batch[0][0].hook.id).values(updated_at=now))


_RUNS_MADE: list[bool] = []
_SERIAL = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "BIGSERIAL PRIMARY KEY"}


async def _write_successes(batch: list[tuple[_Target, int, int]], db: Any) -> None:
    from sqlalchemy import insert, update

    from openwa.db.base import table_of
    from openwa.db.models import DeliveryRow, WebhookRow
    from openwa.kit.clock import utcnow

    now = utcnow()
    rows = [
        {
            "webhook_id": target.hook.id,
            "session_id": target.session_id,
            "event_cursor": target.cursor,
            "event_id": target.event_id,
            "event": target.event,
            "status": "succeeded",
            "attempts": 1,
            "next_attempt_at": now,
            "last_status_code": status,
            "last_duration_ms": ms,
            "created_at": now,
            "updated_at": now,
        }
        for target, status, ms in batch
    ]
    await db.execute(insert(table_of(DeliveryRow)), rows)
    hooks = table_of(WebhookRow)
    await db.execute(update(hooks).where(hooks.c.id == batch[0][0].hook.id).values(updated_at=now))


class _Piped:
    """The second probe's server side: events go down a pipe to the poster process, each
    as a header line (its id, its webhooks' ids, the body's length) and the body; a
    webhook's URL and secret go once, before its first event."""

    def __init__(self) -> None:
        self.worker: Any = None
        self._poster: asyncio.subprocess.Process | None = None
        self._known: set[str] = set()

    async def start(self) -> None:
        self._poster = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "poster", stdin=asyncio.subprocess.PIPE
        )

    def push(self, targets: list[_Target]) -> None:
        import orjson

        assert self._poster is not None
        assert self._poster.stdin is not None
        pipe = self._poster.stdin
        by_event: dict[str, tuple[bytes, list[str]]] = {}
        for target in targets:
            if target.hook.id not in self._known:
                self._known.add(target.hook.id)
                hook = orjson.dumps(
                    {"id": target.hook.id, "url": target.hook.url, "secret": target.hook.secret}
                )
                pipe.write(b"H %d\n" % len(hook) + hook)
            by_event.setdefault(target.event_id, (target.body, []))[1].append(target.hook.id)
        for event_id, (body, hooks) in by_event.items():
            head = orjson.dumps([event_id, hooks])
            pipe.write(b"E %d %d\n" % (len(head), len(body)) + head + body)


async def _poster() -> None:
    """The second probe's poster: reads events from stdin, one posting loop per webhook."""
    from types import SimpleNamespace as Hook

    import orjson

    from openwa.kit.addresses import guarded_connector
    from openwa.webhooks import posting
    from openwa.webhooks.worker import DeliveryWorker, _Body

    http = posting.webhook_client(guarded_connector(True, limit=64), 10.0)
    lender = SimpleNamespace(_http=http, _timeout_s=10.0)
    queues: dict[str, asyncio.Queue[_Body]] = {}
    hooks: dict[str, Any] = {}
    loops: list[asyncio.Task[None]] = []

    async def post_loop(hook: Any, queue: asyncio.Queue[_Body]) -> None:
        while True:
            body = await queue.get()
            await DeliveryWorker._post(lender, hook, body)  # type: ignore[arg-type]

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        kind, *sizes = line.split()
        if kind == b"H":
            item = orjson.loads(await reader.readexactly(int(sizes[0])))
            hooks[item["id"]] = Hook(
                id=item["id"],
                url=item["url"],
                secret=item["secret"],
                previous_secret=None,
                previous_secret_until=None,
                headers={},
            )
            queues[item["id"]] = asyncio.Queue()
            loops.append(asyncio.create_task(post_loop(hooks[item["id"]], queues[item["id"]])))
            continue
        event_id, hook_ids = orjson.loads(await reader.readexactly(int(sizes[0])))
        body = _Body(event_id, await reader.readexactly(int(sizes[1])))
        for hook_id in hook_ids:
            queues[hook_id].put_nowait(body)
    await http.close()


def _patch() -> None:
    """Deliveries without rows: the fan-out hands events over in memory, the worker
    claims nothing and only lends its HTTP client and `_post` (or, for the second
    probe, events go to the poster process)."""
    import orjson

    from openwa.db.engine import on_commit
    from openwa.events.types import WEBHOOK_TEST, Event, wanted
    from openwa.webhooks.repository import WebhookRepository
    from openwa.webhooks.service import WebhookService
    from openwa.webhooks.worker import DeliveryWorker

    probe: _Probe | _Piped = (
        _Piped() if os.environ.get("FANOUT_PROBE_POSTER") == "process" else _Probe()
    )

    async def fan_out(self: WebhookService, db: Any, events: Sequence[Event]) -> None:
        events = [e for e in events if e.event != WEBHOOK_TEST]
        if not events:
            return
        hooks = await WebhookRepository(db).active_for(sorted({e.session_id for e in events}))
        plain = [
            SimpleNamespace(
                id=h.id,
                session_id=h.session_id,
                events=list(h.events),
                url=h.url,
                secret=h.secret,
                previous_secret=None,
                previous_secret_until=None,
                headers=dict(h.headers),
            )
            for h in hooks
        ]
        targets: list[_Target] = []
        for event in events:
            body = orjson.dumps(event.envelope())
            targets.extend(
                _Target(hook, event.id, body, event.cursor or 0, event.session_id, event.event)
                for hook in plain
                if (hook.session_id is None or hook.session_id == event.session_id)
                and wanted(hook.events, event.event)
            )
        if targets:
            # A fresh callback each time: one transaction's fan-outs each push their own.
            on_commit(db, lambda: probe.push(targets), key=object())

    start = DeliveryWorker.start

    async def start_and_lend(self: DeliveryWorker) -> None:
        await start(self)
        probe.worker = self
        if isinstance(probe, _Piped):
            await probe.start()

    async def claim_nothing(self: DeliveryWorker) -> list[Any]:
        return []

    WebhookService.fan_out = fan_out  # type: ignore[method-assign]
    DeliveryWorker.start = start_and_lend  # type: ignore[method-assign]
    DeliveryWorker._dispatch = claim_nothing  # type: ignore[method-assign]


async def _compare(
    databases: list[str], runs: int, profile: Path | None, inbound: int, which: list[str]
) -> None:
    import aiohttp
    from bench_server import KEY, webhook_receiver
    from core import CLIENTS, ROWS, WEBHOOKS, Bench, Counts, Figure, measure

    row = ROWS[4]  # the fan-out
    programs = {
        "server": None,
        "probe": [str(HERE)],
        "probe2": [str(HERE)],
        "probe3": [str(HERE)],
        "probe4": [str(HERE)],
    }
    variants = [(label, programs[label]) for label in which]
    with tempfile.TemporaryDirectory(prefix="openwa-fanout-ceiling-") as directory:
        logs = Path(directory)
        connector = aiohttp.TCPConnector(limit=CLIENTS + WEBHOOKS, keepalive_timeout=2)
        async with (
            aiohttp.ClientSession(headers={"X-API-Key": KEY}, connector=connector) as http,
            webhook_receiver(http) as receiver,
        ):
            for database in databases:
                ratios: dict[str, list[float]] = {label: [] for label, _ in variants}
                for run in range(runs):
                    for label, program in variants:
                        # The server process takes this environment (bench_server.spawn).
                        os.environ["FANOUT_PROBE_POSTER"] = _POSTERS.get(label, "")
                        b = Bench(
                            database,
                            Counts(inbound=inbound),
                            http,
                            receiver,
                            logs,
                            profile,
                            program=program,
                        )
                        figure = await measure(row, b)
                        if isinstance(figure, Figure) and figure.ratio is not None:
                            ratios[label].append(figure.ratio)
                            shown = (
                                f"{figure.value:,.0f} vs {figure.baseline:,.0f} /s, "
                                f"ratio {figure.ratio:.2f} ({figure.note})"
                            )
                        else:
                            shown = str(figure)
                        print(f"{database} run {run + 1} {label}: {shown}", flush=True)
                for label, values in ratios.items():
                    if values:
                        median = statistics.median(values)
                        print(f"{database} {label}: median ratio {median:.2f} of {len(values)}")


# How each probe's server posts (FANOUT_PROBE_POSTER): in a process of its own, or in
# its own process writing what a delivery stream would.
_POSTERS = {"probe2": "process", "probe3": "records", "probe4": "runs"}


def main() -> None:
    if sys.argv[1:2] == ["poster"]:
        sys.path.insert(0, str(HERE.parent.parent / "src"))
        asyncio.run(_poster())
        return
    if sys.argv[1:2] == ["serve"]:
        _patch()
        from openwa.cli import main as openwa_main

        openwa_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy profiles here, as core.py's")
    parser.add_argument(
        "--inbound",
        type=int,
        default=300,
        help="inbound messages (x10 deliveries; longer windows give profiles more samples)",
    )
    parser.add_argument(
        "--variants",
        default="server,probe,probe2",
        help="which servers, back to back: server, probe (one process), probe2 (a poster"
        " process), probe3 (one process, writing a row per success and reading streams),"
        " probe4 (as probe3, one row per batch of successes)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    which = args.variants.split(",")
    asyncio.run(_compare(args.databases.split(","), args.runs, args.profile, args.inbound, which))
    print(f"\n{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
