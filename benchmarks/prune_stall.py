"""How long the retention clean-up holds SQLite's writer: the longest wait of a small
write (a unit of work like an accepted send's) made while the clean-up runs.

`.venv/bin/python benchmarks/prune_stall.py [--events 300000] [--runs 3]`

A database of `--events` events past the retention is made (SQLite, in a temporary
directory), then the clean-up (`Maintenance.run_once`) runs beside a task that writes
one row per unit of work and times each. Each run measures the clean-up in batches as
it ships (`PRUNE_BATCH`) and, as the baseline in the same run, the single DELETE it used
to be, each on a fresh copy of the database.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, insert, update

from openwa.app import build_services
from openwa.config import Settings
from openwa.db import migrate
from openwa.db.base import table_of
from openwa.db.models import CounterRow, EventRow, IdempotencyRow
from openwa.db.sqlite_driver import off_the_loop
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, engine_type="mock", _env_file=None)  # type: ignore[call-arg]


async def _fill(data_dir: Path, count: int) -> None:
    services = build_services(_settings(data_dir))
    await migrate.upgrade(services.db_engine)
    then = utcnow() - timedelta(days=30)
    rows = [
        {
            "cursor": n,
            "id": f"evt_{n:026d}",
            "event": "message.ack",
            "session_id": "ses_bench",
            "engine": "mock",
            "data": {"id": f"m{n}", "status": "read"},
            "metadata": {},
            "created_at": then,
        }
        for n in range(1, count + 1)
    ]
    async with unit_of_work(services.db) as db:
        for start in range(0, count, 10_000):
            await db.execute(insert(table_of(EventRow)), rows[start : start + 10_000])
        await db.execute(update(CounterRow).where(CounterRow.name == "events").values(value=count))
    await services.db_engine.dispose()


async def _measure(data_dir: Path, batched: bool) -> tuple[float, float, int]:
    """The clean-up's wall time, the longest wait of a write beside it, writes made."""
    services = build_services(_settings(data_dir))

    async def one_delete() -> None:
        """The clean-up as it was: one DELETE of every event past the retention."""
        async with services.db_read() as read:
            prune = await services.events.prunable(read, 7)
        with off_the_loop():
            async with unit_of_work(services.db) as db:
                await db.execute(delete(EventRow).where(*prune.where, *prune.recheck))

    waits: list[float] = []
    done = asyncio.Event()

    async def write() -> None:
        n = 0
        while not done.is_set():
            started = time.perf_counter()
            async with unit_of_work(services.db) as db:
                await db.execute(
                    insert(IdempotencyRow).values(
                        api_key_id="key_bench",
                        session_id="ses_bench",
                        key=f"k{n}",
                        request_hash="x",
                        status_code=202,
                        response={},
                        created_at=utcnow(),
                    )
                )
            waits.append(time.perf_counter() - started)
            n += 1
            await asyncio.sleep(0.001)

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await (services.maintenance.run_once() if batched else one_delete())
    took = time.perf_counter() - started
    done.set()
    await writer
    await services.db_engine.dispose()
    return took, max(waits), len(waits)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openwa-prune-bench-") as directory:
        base = Path(directory)
        filled = base / "filled"
        await _fill(filled, args.events)
        worst: dict[str, list[float]] = {"batches": [], "one delete": []}
        for run in range(args.runs):
            for label, batched in (("batches", True), ("one delete", False)):
                copy = base / f"{label.replace(' ', '-')}-{run}"
                shutil.copytree(filled, copy)
                took, longest, writes = await _measure(copy, batched)
                worst[label].append(longest)
                print(
                    f"run {run + 1} {label}: clean-up {took:.2f} s, longest write wait"
                    f" {1000 * longest:.1f} ms over {writes} writes",
                    flush=True,
                )
                shutil.rmtree(copy)
        for label, values in worst.items():
            print(f"{label}: median longest wait {1000 * statistics.median(values):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
