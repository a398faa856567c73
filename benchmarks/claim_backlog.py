"""How a claim scales with the backlog: the webhook queue's claim with many deliveries
waiting for one webhook (a receiver back after an outage), as a ratio to the same claim
with a short queue, in the same run on the same database.

`python benchmarks/claim_backlog.py [--databases sqlite,postgres] [--backlog 30000]`

Each database is fresh and migrated; the deliveries are written straight into the table
(every one pending, due, of one session); each claim runs in a transaction that is
rolled back, so every repetition sees the same queue. The figure is the median of the
repetitions. A claim that grows with the backlog holds the queue's rows (PostgreSQL) or
SQLite's one writer for that long, and the deliveries wait behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench_server import fresh_database
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db import migrate
from openwa.db.base import table_of
from openwa.db.engine import create_engine, create_session_factory
from openwa.db.models import DeliveryRow, SessionRow, WebhookRow
from openwa.kit.clock import utcnow
from openwa.queue.claims import claim_runs
from openwa.webhooks.worker import DELIVERIES

_BATCH = 5000
_SHORT = 300


async def _fill(factory: async_sessionmaker[AsyncSession], webhook: str, count: int) -> None:
    now = utcnow()
    for start in range(0, count, _BATCH):
        rows = [
            {
                "webhook_id": webhook,
                "session_id": "ses_bench",
                "event_cursor": cursor,
                "event_id": f"evt_{webhook}_{cursor}",
                "event": "message.received",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for cursor in range(start, min(start + _BATCH, count))
        ]
        async with factory() as db, db.begin():
            await db.execute(insert(table_of(DeliveryRow)), rows)


async def _claim_ms(factory: async_sessionmaker[AsyncSession], webhook: str, times: int) -> float:
    active = select(WebhookRow.id).where(WebhookRow.active.is_(True))
    scope = [DeliveryRow.webhook_id == webhook, DeliveryRow.webhook_id.in_(active)]
    took = []
    for _ in range(times):
        async with factory() as db:
            started = time.perf_counter()
            async with db.begin() as transaction:
                runs = await claim_runs(
                    db,
                    DELIVERIES,
                    scope=scope,
                    now=utcnow(),
                    lease_s=60.0,
                    worker="bench",
                    limit=4,
                    per_group=50,
                )
                assert runs, "the claim found the queue's head"
                await transaction.rollback()
            took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


async def bench(kind: str, backlog: int, times: int) -> str:
    async with fresh_database(kind) as url:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            factory = create_session_factory(engine)
            now = utcnow()
            async with factory() as db, db.begin():
                db.add(
                    SessionRow(
                        id="ses_bench",
                        name="bench",
                        engine="mock",
                        status="ready",
                        status_history=[],
                        config={},
                        created_at=now,
                        updated_at=now,
                    )
                )
                for hook in ("wh_long", "wh_short"):
                    db.add(
                        WebhookRow(
                            id=hook,
                            session_id="ses_bench",
                            url="http://127.0.0.1:9/hook",
                            events=["*"],
                            secret="whsec_" + "A" * 32,
                            headers={},
                            active=True,
                            source="api",
                            created_at=now,
                            updated_at=now,
                        )
                    )
            await _fill(factory, "wh_long", backlog)
            await _fill(factory, "wh_short", _SHORT)
            if kind == "postgres":
                async with engine.begin() as conn:
                    await conn.exec_driver_sql("ANALYZE deliveries")
            short = await _claim_ms(factory, "wh_short", times)
            long = await _claim_ms(factory, "wh_long", times)
        finally:
            await engine.dispose()
    return (
        f"| {kind} | {backlog:,} | {long:.2f} ms | {_SHORT} | {short:.2f} ms | {long / short:.1f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--times", type=int, default=9)
    args = parser.parse_args()
    lines = [
        "| database | backlog | claim | short queue | claim | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in args.databases.split(","):
        lines.append(await bench(kind, args.backlog, args.times))
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
