"""Several instances: failover times, and sends per second with 1, 2 and 3 instances.

`.venv/bin/python benchmarks/cluster.py [--runs 1] [--lease 15] [--messages 3000]
[--rows 1,2,3,4]`

Every cluster is started the way docs/deployment.md shows (tools/cluster-example.sh, one
instance per process) on a fresh PostgreSQL database (127.0.0.1:5432, migrated by the
instances as they start), Redis (127.0.0.1:6379) and a throwaway radosgw (the S3 server
the tests use, tools/start-radosgw.sh), mock engine, `MOCK_ACK_DELAY_MS=0`. Rows:

1. Failover after `kill -9`: three instances, 30 mock sessions created ten through
   each; one instance is killed; the clock runs until every one of its sessions is
   `ready` on the others (leased to one of them, with that owner's connection the only
   one the mock network shows open). Goal: under 10 s.
2. Failover after `SIGSTOP`: the same, an instance paused instead (it keeps its member
   lock, so its sessions move only when their leases run out). Goal: under
   `SESSION_LEASE_S` + 5 s.
3. Sends per second with 1, 2 and 3 instances: 12 mock sessions spread over them, each
   sending to the next; `--messages` texts posted with a `sendAt` an hour ahead through
   the instances that serve their senders; then every send job is made due at once (one
   UPDATE of `outbox_jobs` and `messages`), and the clock runs from that moment to the
   last transmission in the mock network's log.
4. Webhook deliveries with 1 and 2 instances: core.py's fan-out row (300 `mock/inbound`
   messages to one session, fanned out to its 10 webhooks at a receiver process of its
   own, from the first inbound post to the last delivery received) on a cluster, the
   inbound posted to the session's owner; every instance claims deliveries, so with two
   the POSTs are spread over two processes. Shown as the ratio to core.py's baseline
   (10 signed aiohttp POST loops to the same receiver) measured right after, in the same
   run: how far deliveries in processes of their own go on these cores.

A row's figure is the median of its runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import aiohttp
from bench_server import (
    RECEIVER_PIDS,
    cpu_seconds,
    postgres_cpu_seconds,
    received,
    run_clients,
    signed_post_loops,
    webhook_receiver,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' cluster helpers (a script sees only benchmarks/)

from tests.cluster.support import Cluster, Database, wait_for  # noqa: E402
from tests.fixtures.databases import create_pg_database, drop_pg_database  # noqa: E402
from tests.fixtures.s3 import (  # noqa: E402
    S3Server,
    kill_ceph,
    new_bucket,
    remove_bucket,
    start_radosgw,
)

NAMES = ("a", "b", "c")
WEBHOOKS = 10
INBOUND = 300
SENDER = "+4915112345678"  # who the inbound messages are from
FAILOVER_SESSIONS = 30
SEND_SESSIONS = 12
CLIENTS = 32
TIMEOUT_S = 300.0


@contextmanager
def cluster_of(
    s3: S3Server, directory: Path, names: tuple[str, ...], **overrides: str
) -> Iterator[Cluster]:
    """Instances `names` started together on a fresh database and bucket; gone after."""
    database = create_pg_database()
    bucket = new_bucket(s3)
    run = Path(tempfile.mkdtemp(dir=directory))
    settings = {"LOG_LEVEL": "warning", **overrides}
    cluster = Cluster(Database(database), s3, bucket, run, overrides=settings)
    try:
        for name in names:
            cluster.add(name)
        cluster.start(*names)
        yield cluster
    finally:
        cluster.stop_all()
        drop_pg_database(database)
        remove_bucket(s3, bucket)


def create_sessions(cluster: Cluster, count: int, names: tuple[str, ...]) -> list[str]:
    """`count` mock sessions created through the instances in turn, once all are ready."""
    for i in range(count):
        via = names[i % len(names)]
        with cluster.client(via) as http:
            response = http.post("/api/sessions", json={"name": f"s{i:02d}", "engine": "mock"})
        response.raise_for_status()
        cluster.created_on[response.json()["data"]["id"]] = via
    wait_for(lambda: cluster.settled(cluster.created_on, names), TIMEOUT_S, "sessions ready")
    rows = cluster.database.fetch("SELECT id, phone_number FROM sessions")
    cluster.phones.update({r["id"]: r["phone_number"] for r in rows})
    return list(cluster.created_on)


def failover(s3: S3Server, directory: Path, lease: float, stop: Callable[[Cluster], None]) -> float:
    """Seconds from `stop(cluster)` (on instance a) until a's sessions are ready on b, c."""
    with cluster_of(s3, directory, NAMES, SESSION_LEASE_S=str(lease)) as cluster:
        create_sessions(cluster, FAILOVER_SESSIONS, NAMES)
        victims = cluster.owned_by("a")
        started = time.monotonic()
        stop(cluster)
        wait_for(lambda: cluster.settled(victims, ("b", "c")), TIMEOUT_S, "failover", 0.05)
        return time.monotonic() - started


def kill(cluster: Cluster) -> None:
    cluster.instances["a"].kill()


def pause(cluster: Cluster) -> None:
    a = cluster.instances["a"]
    a.signal(signal.SIGSTOP)
    a.paused_at = datetime.now(UTC)


def sends_per_second(
    s3: S3Server, directory: Path, lease: float, instances: int, messages: int
) -> float:
    names = NAMES[:instances]
    settings = {"MOCK_ACK_DELAY_MS": "0", "SESSION_LEASE_S": str(lease)}
    with cluster_of(s3, directory, names, **settings) as cluster:
        sessions = create_sessions(cluster, SEND_SESSIONS, names)
        pairs = [(s, sessions[(i + 1) % len(sessions)]) for i, s in enumerate(sessions)]
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        asyncio.run(post_all(cluster, pairs, messages, later))
        database = cluster.database
        (row,) = database.fetch("SELECT now() AS due")
        due = row["due"]
        database.fetch(
            "UPDATE messages SET send_at = $1 WHERE from_me AND send_at IS NOT NULL", due
        )
        database.fetch("UPDATE outbox_jobs SET due_at = $1 WHERE NOT done", due)

        def drained() -> datetime | None:
            (r,) = database.fetch(
                "SELECT count(*) AS n, max(created_at) AS last FROM mock_transmissions"
            )
            return r["last"] if r["n"] >= messages else None

        last, _ = wait_for(drained, TIMEOUT_S, f"{messages} transmissions", 0.25)
        seconds: float = (last - due).total_seconds()
        return messages / seconds


async def post_all(
    cluster: Cluster, pairs: list[tuple[str, str]], messages: int, send_at: str
) -> None:
    """`messages` texts along the pairs in turn, from `CLIENTS` concurrent clients, each
    through an instance that serves its sender."""
    pending = iter(range(messages))
    urls = {name: cluster.instances[name].url for name in cluster.instances}

    async def client(http: aiohttp.ClientSession) -> None:
        for i in pending:
            sender, recipient = pairs[i % len(pairs)]
            url = f"{urls[cluster.created_on[sender]]}/api/sessions/{sender}/messages/text"
            body = {"chatId": cluster.phones[recipient], "text": f"m {i}", "sendAt": send_at}
            async with http.post(url, json=body) as response:
                if response.status != 202:
                    raise RuntimeError(f"send answered {response.status}: {await response.text()}")

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    headers = {"X-API-Key": cluster.api_key}
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))


def fanout_ratio(s3: S3Server, directory: Path, lease: float, instances: int) -> float:
    """Row 4 with `instances` instances: deliveries per second over the baseline's."""
    names = NAMES[:instances]
    settings = {"MOCK_ACK_DELAY_MS": "0", "SESSION_LEASE_S": str(lease)}
    with cluster_of(s3, directory, names, **settings) as cluster:
        (session,) = create_sessions(cluster, 1, names)
        owner, _ = cluster.database.leases()[session]
        base = f"{cluster.instances[owner].url}/api/sessions/{session}"
        pids = {name: cluster.instances[name].pid for name in names}
        rate, baseline, used = asyncio.run(fan_out(base, cluster.api_key, pids, owner))
        print(
            f"  {instances} instance(s): {rate:,.0f} deliveries/s, baseline {baseline:,.0f}/s;"
            f" ms CPU per delivery: {used}"
        )
        return rate / baseline


async def fan_out(
    base: str, key: str, pids: dict[str, int], owner: str
) -> tuple[float, float, str]:
    """(deliveries/s of the fan-out of the session at `base`, on `owner`; the signed
    POST loops' rate after it; the CPU time per delivery of each instance, of
    PostgreSQL and of the receiver, and of the receiver and the loops in the baseline)."""
    total, tag = INBOUND * WEBHOOKS, secrets.token_hex(6)
    # Idle connections go before uvicorn's 5 s keep-alive ends them (see core.py).
    connector = aiohttp.TCPConnector(limit=CLIENTS + WEBHOOKS, keepalive_timeout=2)
    headers = {"X-API-Key": key}
    async with (
        aiohttp.ClientSession(headers=headers, connector=connector) as http,
        webhook_receiver(http) as receiver,
    ):

        async def call(path: str, body: dict[str, object], expect: int) -> None:
            async with http.post(base + path, json=body) as response:
                if response.status != expect:
                    raise RuntimeError(
                        f"{path} answered {response.status}: {await response.text()}"
                    )

        for _ in range(WEBHOOKS):
            hook: dict[str, object] = {
                "url": f"{receiver}/hook/{tag}",
                "events": ["message.received"],
            }
            await call("/webhooks", hook, 201)
        pids = {**pids, "receiver": RECEIVER_PIDS[receiver]}
        clock = _cpu_clock(pids, total)
        started, _ = await run_clients(
            CLIENTS,
            INBOUND,
            lambda i: call("/mock/inbound", {"from": SENDER, "text": f"in {i}"}, 202),
        )
        rate = total / (await received(http, receiver, tag, total) - started)
        used = clock().replace(f"{owner} ", f"{owner} (owner) ", 1)
        clock = _cpu_clock({"receiver": RECEIVER_PIDS[receiver]}, total, postgres=False)
        baseline, loops = await signed_post_loops(http, receiver, total, WEBHOOKS)
        used += f"; baseline: {clock()}, {loops}"
    return rate, baseline, used


def _cpu_clock(pids: dict[str, int], items: int, postgres: bool = True) -> Callable[[], str]:
    """Starts counting the CPU time of `pids` (and PostgreSQL's); the function returned
    says each one's milliseconds per item since."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    database = postgres_cpu_seconds() if postgres else 0.0

    def per_item() -> str:
        used = [
            f"{name} {1000 * (cpu_seconds(pid) - before[name]) / items:.2f}"
            for name, pid in pids.items()
        ]
        if postgres:
            used.append(f"PostgreSQL {1000 * (postgres_cpu_seconds() - database) / items:.2f}")
        return ", ".join(used)

    return per_item


def _shown(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--lease", type=float, default=15.0, help="SESSION_LEASE_S")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rows", default="1,2,3,4")
    args = parser.parse_args()
    rows = {int(n) for n in args.rows.split(",") if n}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="owa-cluster-bench-") as name:
        directory = Path(name)
        # A short path: radosgw's sockets live below it (108 characters at most).
        rgw = Path(tempfile.mkdtemp(prefix="owa-rgw-"))
        s3 = start_radosgw(rgw)
        try:
            for run in range(args.runs):
                figures: list[tuple[str, Callable[[], float]]] = []
                if 1 in rows:
                    figures.append(
                        (
                            "failover after kill -9 (s)",
                            lambda: failover(s3, directory, args.lease, kill),
                        )
                    )
                if 2 in rows:
                    figures.append(
                        (
                            f"failover after SIGSTOP, lease {args.lease:g} s (s)",
                            lambda: failover(s3, directory, args.lease, pause),
                        )
                    )
                if 3 in rows:
                    for n in (1, 2, 3):
                        figures.append(
                            (
                                f"sends per second, {n} instance(s)",
                                partial(
                                    sends_per_second, s3, directory, args.lease, n, args.messages
                                ),
                            )
                        )
                if 4 in rows:
                    for n in (1, 2):
                        figures.append(
                            (
                                f"webhook deliveries, {n} instance(s), ratio to the baseline",
                                partial(fanout_ratio, s3, directory, args.lease, n),
                            )
                        )
                for label, measure in figures:
                    try:
                        value = measure()
                    except Exception as exc:  # one row failing does not end the others
                        print(f"run {run + 1}: {label}: failed: {exc}"[:500], flush=True)
                        continue
                    results.setdefault(label, []).append(value)
                    print(f"run {run + 1}: {label}: {_shown(value)}", flush=True)
        finally:
            kill_ceph(s3.directory)
            shutil.rmtree(rgw, ignore_errors=True)
    print(f"\n{args.runs} run(s), median shown; {os.cpu_count()} cores")
    for label, values in results.items():
        print(
            f"| {label} | {_shown(statistics.median(values))} |"
            f" {', '.join(_shown(v) for v in values)} |"
        )


if __name__ == "__main__":
    main()
