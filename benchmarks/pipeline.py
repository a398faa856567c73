"""Pipeline throughput: accepted messages per second and end-to-end webhook events per second.

Starts the real server (`python -m openwa serve`) on SQLite and on PostgreSQL, links two
mock sessions A and B, and registers a webhook on B for `message.received` pointing at a
receiver in this process. Then:

- accept: N text messages from A to B posted by C concurrent clients -> accepted/s;
  baseline in the same run: `GET /health` with the same clients (the HTTP stack alone).
- end to end: from the first post until the receiver has every `message.received`
  (accepted, queued, sent by the engine, received by B, logged, signed, delivered)
  -> events/s; baseline in the same run: the same receiver fed directly with N signed
  POSTs by aiohttp (the webhook client and receiver alone).

Usage: .venv/bin/python benchmarks/pipeline.py [--messages 2000] [--clients 32]
       [--databases sqlite,postgres]. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from bench_server import KEY, free_port, serve, wait_healthy


@dataclass
class Result:
    database: str
    accept_per_s: float
    health_per_s: float
    e2e_per_s: float
    direct_per_s: float


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.done = asyncio.Event()
        self.expected = 0
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return web.Response(status=204)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def reset(self, expected: int) -> None:
        self.count, self.expected = 0, expected
        self.done = asyncio.Event()


async def _run_clients(clients: int, total: int, call: object) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await call(i)  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - started


async def bench(database: str, url: str, messages: int, clients: int) -> Result:
    data_dir = Path(tempfile.mkdtemp(prefix="openwa-bench-"))
    port = free_port()
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(data_dir),
        "MOCK_AUTH_DELAY_MS": "100",
        "MOCK_ACK_DELAY_MS": "200",
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    server = serve(port, env, subprocess.DEVNULL)
    receiver = Receiver()
    runner = await receiver.start()
    base = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": KEY}
    try:
        async with aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=clients)
        ) as http:
            await wait_healthy(http, base, server)
            phones = {}
            for name in ("a", "b"):
                async with http.post(base + "/api/sessions", json={"name": name}) as r:
                    assert r.status == 201, await r.text()
            for name in ("a", "b"):
                for _ in range(100):
                    async with http.get(f"{base}/api/sessions/{name}") as r:
                        body = await r.json()
                    if body["data"]["status"] == "ready":
                        phones[name] = body["data"]["phoneNumber"]
                        break
                    await asyncio.sleep(0.1)
            hook = {"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["message.received"]}
            async with http.post(base + "/api/sessions/b/webhooks", json=hook) as r:
                assert r.status == 201, await r.text()
                secret = (await r.json())["data"]["secret"]

            async def health(_: int) -> None:
                async with http.get(base + "/health") as r:
                    await r.read()

            health_s = await _run_clients(clients, messages, health)

            receiver.reset(messages)
            started = time.perf_counter()

            async def send(i: int) -> None:
                body = {"chatId": "+" + phones["b"], "text": f"bench {i}"}
                async with http.post(base + "/api/sessions/a/messages/text", json=body) as r:
                    assert r.status == 202, await r.text()

            accept_s = await _run_clients(clients, messages, send)
            await asyncio.wait_for(receiver.done.wait(), timeout=600)
            e2e_s = time.perf_counter() - started

            # Baseline: the same number of signed POSTs straight to the receiver.
            from openwa.webhooks.signing import signature_header

            receiver.reset(messages)
            payload = b'{"event":"message.received","data":{"text":"bench"}}'

            async def direct(i: int) -> None:
                ts = int(time.time())
                sig = signature_header([secret], f"evt_{i}", ts, payload)
                h = {
                    "webhook-id": f"evt_{i}",
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sig,
                }
                async with http.post(
                    f"http://127.0.0.1:{receiver.port}/hook", data=payload, headers=h
                ) as r:
                    await r.read()

            direct_s = await _run_clients(clients, messages, direct)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        await runner.cleanup()
    return Result(
        database,
        accept_per_s=messages / accept_s,
        health_per_s=messages / health_s,
        e2e_per_s=messages / e2e_s,
        direct_per_s=messages / direct_s,
    )


async def fresh_postgres() -> tuple[str, str]:
    name = "openwa_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_postgres(name: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    results = []
    for database in args.databases.split(","):
        if database == "sqlite":
            path = Path(tempfile.mkdtemp(prefix="openwa-bench-db-")) / "openwa.db"
            results.append(
                await bench(database, f"sqlite+aiosqlite:///{path}", args.messages, args.clients)
            )
        else:
            name, url = await fresh_postgres()
            try:
                results.append(await bench(database, url, args.messages, args.clients))
            finally:
                await drop_postgres(name)
    print(
        f"\n{args.messages} messages, {args.clients} concurrent clients, {os.cpu_count()} cores\n"
    )
    print(
        "| database | accepted msg/s | GET /health req/s (baseline) | ratio | webhook events/s end to end | direct signed POSTs/s (baseline) | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.database} | {r.accept_per_s:.0f} | {r.health_per_s:.0f} | "
            f"{r.accept_per_s / r.health_per_s:.2f} | {r.e2e_per_s:.0f} | {r.direct_per_s:.0f} | "
            f"{r.e2e_per_s / r.direct_per_s:.3f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
