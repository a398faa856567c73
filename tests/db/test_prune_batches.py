"""Retention deletes a batch at a time, each batch its own transaction: one delete of
everything past the retention held SQLite's only writer (every send waited behind it)
and kept one PostgreSQL transaction open over all of it. The batches walk the keys, so
rows kept (events a pending delivery needs) are passed once, not searched again by
every batch."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, event, func, select, update

from openwa.db.base import Base
from openwa.db.batches import Prune
from openwa.db.models import (
    AuditRow,
    DeliveryRow,
    EventRow,
    IdempotencyRow,
    MessageRow,
    OutboxJobRow,
)
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import send_text, wait_sent
from tests.webhooks.support import data_of, hooks_path, inbound, ready_session, register

_AGED = {
    EventRow: EventRow.created_at,
    AuditRow: AuditRow.at,
    IdempotencyRow: IdempotencyRow.created_at,
    MessageRow: MessageRow.timestamp,
    OutboxJobRow: OutboxJobRow.created_at,
}


async def _old(api: Api) -> dict[str, int]:
    """Rows past every retention, by table."""
    then = utcnow() - timedelta(days=300)
    async with api.services.db() as db:
        return {
            model.__tablename__: int(
                await db.scalar(select(func.count()).where(column < then)) or 0
            )
            for model, column in _AGED.items()
        }


async def _waited_for(api: Api) -> set[int]:
    """The events pending deliveries still have to send."""
    async with api.services.db() as db:
        found = await db.execute(
            select(DeliveryRow.event_cursor).where(DeliveryRow.status == "pending")
        )
        return set(found.scalars())


async def test_retention_deletes_in_batches_each_committed(app_factory: AppFactory) -> None:
    async with app_factory.running(webhook_allow_private=True) as api:
        await _prune_in_batches(api)


async def _prune_in_batches(api: Api) -> None:
    session = await ready_session(api)
    # A webhook whose receiver is down: its deliveries wait, and so do their events.
    down = await register(api, session["id"], "http://127.0.0.1:9/", events=["message.received"])
    for n in range(4):
        await inbound(api, session["id"], f"old {n}")
        sent = await send_text(
            api, session["id"], "15550001111", f"old {n}", idempotency_key=f"k{n}"
        )
        await wait_sent(api, session["id"], sent["id"])  # a pending send is never pruned
    # A send scheduled far ahead: its message and job wait, whatever their age.
    scheduled = {"chatId": "15550001111", "text": "later", "sendAt": "2099-01-01T00:00:00Z"}
    response = await api.request(
        "POST", f"/api/sessions/{session['id']}/messages/text", json=scheduled
    )
    assert response.status_code == 202, response.text
    waiting = await wait_for(lambda: _waited_for(api), lambda c: len(c) == 4, 15, "deliveries")
    path = f"{hooks_path(session['id'])}/{down['id']}"
    data_of(await api.request("PATCH", path, json={"active": False}))
    async with unit_of_work(api.services.db) as db:
        # A job a session deleted before its jobs went with it left behind, not done.
        db.add(
            OutboxJobRow(
                session_id="ses_01JD8X0000000000000000GONE",
                message_id="gone",
                due_at=utcnow(),
                attempts=0,
                done=False,
                created_at=utcnow(),
            )
        )
        for model, column in _AGED.items():
            await db.execute(update(model).values({column.key: utcnow() - timedelta(days=400)}))
    aged = await _old(api)
    assert all(count >= 4 for count in aged.values()), aged

    seen: list[tuple[str, int]] = []

    def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM"):
            seen.append((statement.split()[2], cursor.rowcount))

    def committed(conn: Any) -> None:
        seen.append(("COMMIT", 0))

    services = api.services
    maintenance = services.maintenance
    maintenance.prune_batch = 3
    engine = services.db_engine.sync_engine
    event.listen(engine, "after_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    try:
        await maintenance.run_once()
    finally:
        event.remove(engine, "after_cursor_execute", executed)
        event.remove(engine, "commit", committed)

    # The events the paused webhook still has to send stay (more than a batch holds).
    kept = {"events": len(waiting), "messages": 1, "outbox_jobs": 1}
    assert await _old(api) == {**dict.fromkeys(aged, 0), **kept}
    async with api.services.db() as db:
        left = set((await db.execute(select(EventRow.cursor))).scalars())
    assert waiting <= left
    for table, count in kept.items():
        aged[table] -= count
    for table, count in aged.items():
        deletes = [i for i, (name, _) in enumerate(seen) if name == table]
        # ceil(count / 3) full or partial batches, and one that finds the rest empty
        # when the count is a multiple of 3.
        assert len(deletes) >= -(-count // 3), (table, seen)
        assert all(seen[i][1] <= 3 for i in deletes), (table, seen)
        assert sum(seen[i][1] for i in deletes) == count, (table, seen)
        for before, after in itertools.pairwise(deletes):
            assert ("COMMIT", 0) in seen[before:after], (table, seen)


def test_a_batch_of_messages_is_deleted_through_the_primary_key() -> None:
    """A list of (session, id) pairs made SQLite scan the whole messages table for each
    batch (112 ms at 300k messages, growing with it): by session, then ids, it searches
    the key."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    prune = Prune([MessageRow.session_id, MessageRow.id], [MessageRow.timestamp < utcnow()])
    keys = [("ses_a", "3EB0A1"), ("ses_a", "3EB0A2"), ("ses_b", "3EB0B1")]
    captured: list[str] = []

    class Capture:
        async def execute(self, statement: Any) -> Any:
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            captured.append(str(compiled))
            return type("Result", (), {"rowcount": 0})()

    asyncio.run(prune.delete(Capture(), keys))  # type: ignore[arg-type]
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + captured[0])]
    assert not any(step.startswith("SCAN messages") for step in plan), plan
    assert any("sqlite_autoindex_messages_1 (session_id=? AND id=?)" in step for step in plan), plan


async def test_a_batch_over_a_thousand_sessions_is_deleted(api: Api) -> None:
    """A batch of 1,200 sessions' messages made one chain of 1,200 ORs, which SQLite
    refuses past a depth of 1,000: that batch failed at every run, and nothing of the
    table was pruned again."""
    prune = Prune([MessageRow.session_id, MessageRow.id], [MessageRow.timestamp < utcnow()])
    keys = [(f"ses_{n:026d}", f"3EB0{n:020X}") for n in range(1200)]
    async with unit_of_work(api.services.db) as db:
        assert await prune.delete(db, keys) == 0
