"""How long a session's delete holds SQLite's writer: the longest wait of another
session's one-row write made while `DELETE /api/sessions/{id}` runs, and the -wal file
it leaves.

`.venv/bin/python benchmarks/session_delete_stall.py [--messages 200000]
[--deliveries 100000] [--contacts 20000] [--runs 3]`

A database with one session holding `--messages` messages, `--contacts` contacts and a
webhook of its own with `--deliveries` deliveries is made once (SQLite, in a temporary
directory, the app in-process); each run deletes the session through the API on a fresh
copy, beside a task that writes one row per unit of work for another session and times
each. The -wal file's size is read after the delete, then after the next checkpoint and
one more write (the writer starts the WAL over then, cut back to `journal_size_limit`
where it is set). Run it on two checkouts (`PYTHONPATH=src`) to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import insert

from openwa.app import create_app
from openwa.config import Settings
from openwa.db.models import ContactRow, DeliveryRow, MessageRow, SetAsideReportRow
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow
from openwa.services import Services

KEY = "bench-admin-key-0123456789abcdef"
CHUNK = 10_000


def _settings(data_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        api_key=KEY,
        engine_type="mock",
        webhook_allow_private=True,
        log_level="warning",
        rate_limit_admin="100000/second",
    )


@asynccontextmanager
async def _app(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app = create_app(_settings(data_dir))
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"X-API-Key": KEY}, timeout=600
        ) as http:
            yield http, app.state.services


async def _chunks(services: Services, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with unit_of_work(services.db) as db:
            await db.execute(insert(model), rows[start : start + CHUNK])


async def _fill(data_dir: Path, args: argparse.Namespace) -> tuple[str, str]:
    """The doomed session's id and the other session's."""
    async with _app(data_dir) as (http, services):
        ids = []
        for name in ("doomed", "other"):
            created = await http.post("/api/sessions", json={"name": name, "autoStart": False})
            ids.append(created.json()["data"]["id"])
        doomed, other = ids
        hook = await http.post(
            f"/api/sessions/{doomed}/webhooks", json={"url": "http://127.0.0.1:9/hook"}
        )
        webhook_id = hook.json()["data"]["id"]
        now = utcnow()
        message = {
            "session_id": doomed,
            "chat_id": "15550001111@s.whatsapp.net",
            "from_me": False,
            "sender": "15550001111@s.whatsapp.net",
            "type": "text",
            "status": "received",
            "timestamp": now,
            "created_at": now,
            "updated_at": now,
        }
        await _chunks(
            services,
            MessageRow,
            [
                {**message, "id": f"3EB0{n:020X}", "content": {"text": f"message {n} " * 8}}
                for n in range(args.messages)
            ],
        )
        await _chunks(
            services,
            ContactRow,
            [
                {"session_id": doomed, "chat_id": f"1{n:010d}@s.whatsapp.net", "updated_at": now}
                for n in range(args.contacts)
            ],
        )
        delivery = {
            "webhook_id": webhook_id,
            "session_id": doomed,
            "event": "message.received",
            "status": "succeeded",
            "attempts": 1,
            "next_attempt_at": now,
            "last_status_code": 200,
            "last_duration_ms": 3,
            "created_at": now,
            "updated_at": now,
        }
        await _chunks(
            services,
            DeliveryRow,
            [
                {**delivery, "event_cursor": n, "event_id": f"evt_{n:026d}"}
                for n in range(args.deliveries)
            ],
        )
    return doomed, other


def _wal(data_dir: Path) -> float:
    wal = data_dir / "openwa.db-wal"
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


async def _measure(data_dir: Path, doomed: str, other: str) -> dict[str, float]:
    async with _app(data_dir) as (http, services):
        waits: list[float] = []
        done = asyncio.Event()

        async def write(n: int) -> None:
            async with unit_of_work(services.db) as db:
                await db.execute(
                    insert(SetAsideReportRow).values(
                        session_id=other,
                        kind="bench",
                        report={"n": n},
                        error="-",
                        created_at=utcnow(),
                    )
                )

        async def writes() -> None:
            n = 0
            while not done.is_set():
                started = time.perf_counter()
                await write(n)
                waits.append(time.perf_counter() - started)
                n += 1
                await asyncio.sleep(0.001)

        writer = asyncio.create_task(writes())
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        response = await http.delete(f"/api/sessions/{doomed}")
        took = time.perf_counter() - started
        done.set()
        await writer
        assert response.status_code == 200, response.text
        wal_after = _wal(data_dir)
        await asyncio.sleep(1.5)  # the writer's next checkpoint, then a write
        await write(-1)
        await asyncio.sleep(1.5)
        await write(-2)
        return {
            "delete_s": took,
            "longest_wait_ms": 1000 * max(waits),
            "writes": len(waits),
            "wal_after_mb": wal_after,
            "wal_later_mb": _wal(data_dir),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openwa-delete-bench-") as directory:
        base = Path(directory)
        filled = base / "filled"
        doomed, other = await _fill(filled, args)
        longest: list[float] = []
        for run in range(args.runs):
            copy = base / f"run-{run}"
            shutil.copytree(filled, copy)
            result = await _measure(copy, doomed, other)
            longest.append(result["longest_wait_ms"])
            print(
                f"run {run + 1}: delete {result['delete_s']:.2f} s, longest write wait"
                f" {result['longest_wait_ms']:.1f} ms over {result['writes']:.0f} writes;"
                f" -wal {result['wal_after_mb']:.1f} MB after, {result['wal_later_mb']:.1f} MB"
                " after the next checkpoint and write",
                flush=True,
            )
            shutil.rmtree(copy)
        print(f"median longest wait {statistics.median(longest):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
