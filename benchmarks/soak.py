"""Does the server's memory settle under steady work? A soak of one server, in waves.

`.venv/bin/python benchmarks/soak.py [--databases sqlite,postgres] [--waves 12]
[--per-wave 2000]`

One `openwa serve` (mock engine, `MOCK_ACK_DELAY_MS=0`) per database, kept for every
wave. Each wave does what a busy gateway sees in a day, compressed:

- `--per-wave` texts from mock session A to B (32 clients), each reaching B's webhook
  (the receiver process of `core.py`) as `message.received`, and acked on A's side;
- session churn: three mock sessions created, linked (`ready`) and deleted;
- five `GET /api/events/stream` and five `GET /ws` clients that read a little and then
  drop the connection without a goodbye;
- a webhook registered on A, sent a test event, and deleted.

After each wave, once every delivery has arrived and a second has passed, the server's
resident memory (VmRSS) is read. The first waves warm up caches, pools and the
allocator; what tells is the slope after them: the least-squares fit of RSS over the
messages sent, in MB per 10,000 messages, from wave 2 on and over the second half of
the waves. A leak shows as a slope that stays up however many waves run; bounded caches
fill and then flatten.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import bench_server as bench

CLIENTS = 32
SERVER_ENV = {**bench.MOCK_ENV, "MOCK_AUTH_DELAY_MS": "0"}  # sessions linked at once
WARM_UP_WAVES = 2


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def call(http: aiohttp.ClientSession, method: str, url: str, expect: int, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as response:
        if response.status != expect:
            raise RuntimeError(
                f"{method} {url} answered {response.status}: {await response.text()}"
            )
        return None if response.status == 204 else await response.json()


async def dropped_stream(port: int, request: str) -> None:
    """A client that reads the start of a stream and then goes away without a goodbye
    (no close frame, no FIN: the socket is reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 101")):
        raise RuntimeError(f"stream refused: {head[:80]!r}")
    writer.transport.abort()


async def dropped_streams(port: int, a_id: str) -> None:
    key = f"X-API-Key: {bench.KEY}\r\nHost: 127.0.0.1\r\n"
    for _ in range(5):
        await dropped_stream(port, f"GET /api/events/stream HTTP/1.1\r\n{key}\r\n")
        await dropped_stream(
            port,
            f"GET /ws?sessions={a_id} HTTP/1.1\r\n{key}Upgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n",
        )


async def churn(http: aiohttp.ClientSession, base: str, receiver: str, a_id: str) -> None:
    """Sessions and webhooks that come and go."""
    for i in range(3):
        session = await bench.link_mock(http, base, f"churn-{secrets.token_hex(3)}-{i}")
        await call(http, "DELETE", f"{base}/api/sessions/{session['id']}", 200)
    hooks = f"{base}/api/sessions/{a_id}/webhooks"
    hook = await call(http, "POST", hooks, 201, json={"url": f"{receiver}/hook/churn"})
    await call(http, "POST", f"{hooks}/{hook['data']['id']}/test", 202)
    await call(http, "DELETE", f"{hooks}/{hook['data']['id']}", 200)


def slope_mb_per_10k(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) over messages, per 10,000 messages."""
    fit = statistics.linear_regression([m for m, _ in points], [r for _, r in points])
    return fit.slope * 10_000


async def soak(database: str, waves: int, per_wave: int, receiver: str, logs: Path) -> str:
    async with (
        bench.fresh_database(database) as url,
        aiohttp.ClientSession(
            headers={"X-API-Key": bench.KEY}, connector=aiohttp.TCPConnector(limit=CLIENTS + 8)
        ) as http,
    ):
        port = bench.free_port()
        data_dir = tempfile.mkdtemp(prefix="openwa-soak-", dir=logs)
        log_path = logs / f"{database}-server.log"
        with log_path.open("wb") as log:
            env = {**SERVER_ENV, "DATABASE_URL": url, "DATA_DIR": data_dir}
            process = bench.serve(port, env, log)
            try:
                base = f"http://127.0.0.1:{port}"
                await bench.wait_healthy(http, base, process, log_path)
                a = await bench.link_mock(http, base, "a")
                b = await bench.link_mock(http, base, "b")
                tag = secrets.token_hex(6)
                hook = {"url": f"{receiver}/hook/{tag}", "events": ["message.received"]}
                await call(http, "POST", f"{base}/api/sessions/{b['id']}/webhooks", 201, json=hook)
                texts = f"{base}/api/sessions/{a['id']}/messages/text"
                body = {"chatId": "+" + b["phoneNumber"]}
                points: list[tuple[int, float]] = [(0, rss_mb(process.pid))]
                lines = [f"| 0 | 0 | {points[0][1]:.1f} | |"]
                for wave in range(1, waves + 1):
                    started = time.perf_counter()
                    await bench.run_clients(
                        CLIENTS,
                        per_wave,
                        lambda i: call(http, "POST", texts, 202, json={**body, "text": f"s {i}"}),
                    )
                    await bench.received(http, receiver, tag, wave * per_wave)
                    await churn(http, base, receiver, a["id"])
                    await dropped_streams(port, a["id"])
                    seconds = time.perf_counter() - started
                    await asyncio.sleep(1.0)  # what is freed at the end of the wave is freed
                    points.append((wave * per_wave, rss_mb(process.pid)))
                    lines.append(
                        f"| {wave} | {wave * per_wave:,} | {points[-1][1]:.1f} | {seconds:.1f} |"
                    )
            finally:
                bench.stop(process)
    head = "| wave | messages so far | server RSS (MB) | wave took (s) |\n| --- | --- | --- | --- |"
    return f"### {database}\n\n{head}\n" + "\n".join(lines) + "\n\n" + _slopes(points)


def _slopes(points: list[tuple[int, float]]) -> str:
    """The slope after the warm-up, and over the second half of the waves alone: a
    cache still filling slopes in the first and flattens in the second; a leak does not."""
    said = []
    for first in (WARM_UP_WAVES, len(points) // 2):
        settled = points[first:]
        if len(settled) >= 2:
            said.append(
                f"from wave {first} on: {slope_mb_per_10k(settled):+.2f} MB per 10,000 messages"
            )
    return (
        "Slope " + "; ".join(said) + f". RSS at wave {WARM_UP_WAVES}:"
        f" {points[min(WARM_UP_WAVES, len(points) - 1)][1]:.1f} MB, at the end:"
        f" {points[-1][1]:.1f} MB."
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--waves", type=int, default=12)
    parser.add_argument("--per-wave", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openwa-soak-") as directory:
        logs = Path(directory)
        async with aiohttp.ClientSession() as http, bench.webhook_receiver(http) as receiver:
            for database in args.databases.split(","):
                print(await soak(database, args.waves, args.per_wave, receiver, logs), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
