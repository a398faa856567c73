"""A session's delete takes its rows a batch at a time, each batch its own transaction.

The row's delete cascaded to every message, contact, webhook and delivery in one
transaction: on SQLite a session with a million messages held the one writer 9.4 s, and
another session's one-row write waited as long. Now the session is gone for the API at
once (its tombstone, committed first), its rows go in batches, then the row. A delete
cut short leaves the session hidden, and maintenance finishes it (at a start, then
every 10 minutes). The API answers as it did.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

import openwa.db.batches as batches_module
from openwa.db.base import Base
from openwa.db.batches import Prune
from openwa.db.models import (
    ContactRow,
    DeliveryAttemptRow,
    DeliveryRow,
    MediaTombstoneRow,
    MessageRow,
    OutboxJobRow,
    PendingEditRow,
    SetAsideReportRow,
    WebhookRow,
)
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.removal import SessionRemoval
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import data_of, error_of, ready_session
from tests.webhooks.support import register

BATCH = 3
MESSAGES = 20
FAILSAFE_S = 30.0
# Tables with a session's id that keep rows of it once it is deleted: the event log
# (`session.deleted` among them) and the audit log, idempotency keys (for a day), the
# tombstone (until its prefix is swept) and the mock network's own store.
KEPT = {
    "events",
    "audit_log",
    "idempotency_keys",
    "media_tombstones",
    "mock_transmissions",
    "mock_connections",
    "mock_accounts",
}


async def _fill(api: Api, session_id: str, webhook_id: str) -> None:
    """More of every large kind of row than a batch holds (inert: sent messages, jobs
    due in 2099, deliveries that ended)."""
    now = utcnow()
    later = now + timedelta(days=3650)
    async with unit_of_work(api.services.db) as db:
        await db.execute(
            insert(MessageRow),
            [
                {
                    "session_id": session_id,
                    "id": f"3EB0{n:020X}",
                    "chat_id": "15550001111@s.whatsapp.net",
                    "from_me": True,
                    "type": "text",
                    "content": {"text": f"m{n}"},
                    "status": "sent",
                    "timestamp": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(MESSAGES)
            ],
        )
        await db.execute(
            insert(ContactRow),
            [
                {
                    "session_id": session_id,
                    "chat_id": f"155500{n:05d}@s.whatsapp.net",
                    "updated_at": now,
                }
                for n in range(7)
            ],
        )
        await db.execute(
            insert(PendingEditRow),
            [
                {
                    "session_id": session_id,
                    "message_id": f"EDIT{n}",
                    "text": "edited",
                    "edited_at": now,
                    "created_at": now,
                }
                for n in range(4)
            ],
        )
        await db.execute(
            insert(OutboxJobRow),
            [
                {
                    "session_id": session_id,
                    "message_id": f"3EB0{n:020X}",
                    "due_at": later,
                    "attempts": 0,
                    "done": False,
                    "created_at": now,
                }
                for n in range(5)
            ],
        )
        await db.execute(
            insert(DeliveryRow),
            [
                {
                    "webhook_id": webhook_id,
                    "session_id": session_id,
                    "event_cursor": n,
                    "event_id": f"evt_{n}",
                    "event": "message.received",
                    "status": "failed",
                    "attempts": 1,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(7)
            ],
        )
        delivered = (
            await db.execute(select(DeliveryRow.id).where(DeliveryRow.webhook_id == webhook_id))
        ).scalars()
        await db.execute(
            insert(DeliveryAttemptRow),
            [
                {"delivery_id": d, "attempt": 1, "at": now, "status_code": 500, "duration_ms": 1}
                for d in delivered
            ],
        )
        await db.execute(
            insert(SetAsideReportRow),
            [
                {
                    "session_id": session_id,
                    "kind": "message",
                    "report": {"n": n},
                    "error": "refused",
                    "created_at": now,
                }
                for n in range(5)
            ],
        )


async def _rows_of(api: Api, session_id: str) -> dict[str, int]:
    """Rows of the session in every table that has a session id (but those kept by
    design) and in `delivery_attempts` (its deliveries'), by table."""
    counts: dict[str, int] = {}
    async with api.services.db() as db:
        for table in Base.metadata.sorted_tables:
            if "session_id" in table.c and table.name not in KEPT:
                found = select(func.count()).where(table.c.session_id == session_id)
                counts[table.name] = int(await db.scalar(found) or 0)
        counts["delivery_attempts"] = int(
            await db.scalar(
                select(func.count())
                .select_from(DeliveryAttemptRow)
                .join(DeliveryRow, DeliveryRow.id == DeliveryAttemptRow.delivery_id)
                .where(DeliveryRow.session_id == session_id)
            )
            or 0
        )
        counts["sessions"] = int(
            await db.scalar(
                text("SELECT count(*) FROM sessions WHERE id = :id"), {"id": session_id}
            )
            or 0
        )
    return counts


def _small_batches(api: Api, monkeypatch: pytest.MonkeyPatch) -> SessionRemoval:
    removal = api.services.sessions.removal
    monkeypatch.setattr(removal, "batch", BATCH)
    return removal


async def _session_with_rows(api: Api, name: str) -> dict[str, Any]:
    session = await ready_session(api, name)
    hook = await register(api, session["id"], "http://127.0.0.1:9/", events=["message.received"])
    await _fill(api, session["id"], hook["id"])
    return session


async def _logged_deletes(api: Api, session_id: str) -> list[str]:
    params = {"sessions": session_id, "events": "session.deleted"}
    found = data_of(await api.request("GET", "/api/events", params=params))["events"]
    return [e["event"] for e in found]


async def test_a_sessions_rows_go_a_batch_per_transaction(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each large table of the session is deleted `BATCH` rows per statement with a
    commit between two, another session's writes go through between the batches, and
    nothing of the session is left; the answers are those of before."""
    async with app_factory.running(webhook_allow_private=True) as api:
        alice = await _session_with_rows(api, "alice")
        bob = await ready_session(api, "bob")
        before = await _rows_of(api, alice["id"])
        assert before["messages"] == MESSAGES, before
        assert before["set_aside_reports"] == 5, before
        _small_batches(api, monkeypatch)

        seen: list[tuple[str, int]] = []

        def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("DELETE FROM"):
                seen.append((statement.split()[2], cursor.rowcount))
            elif statement.startswith("INSERT INTO set_aside_reports"):
                seen.append(("bob", 1))

        def committed(conn: Any) -> None:
            seen.append(("COMMIT", 0))

        done = asyncio.Event()

        async def bob_writes() -> None:
            """Another session's one-row writes, one after the other, meanwhile."""
            n = 0
            while not done.is_set():
                async with unit_of_work(api.services.db) as db:
                    await db.execute(
                        insert(SetAsideReportRow).values(
                            session_id=bob["id"],
                            kind="message",
                            report={"n": n},
                            error="refused",
                            created_at=utcnow(),
                        )
                    )
                n += 1
                await asyncio.sleep(0.001)

        engine = api.services.db_engine.sync_engine
        event.listen(engine, "after_cursor_execute", executed)
        event.listen(engine, "commit", committed)
        writing = asyncio.ensure_future(bob_writes())
        try:
            response = await api.request("DELETE", f"/api/sessions/{alice['id']}")
        finally:
            done.set()
            await writing
            event.remove(engine, "after_cursor_execute", executed)
            event.remove(engine, "commit", committed)

        assert data_of(response) == {"id": alice["id"], "deleted": True}
        for table in ("messages", "outbox_jobs", "contacts", "deliveries", "set_aside_reports"):
            count = before[table]
            deletes = [i for i, (name, _) in enumerate(seen) if name == table]
            # More than one transaction: ceil(count / BATCH) batches at least.
            assert len(deletes) >= -(-count // BATCH), (table, seen)
            assert all(seen[i][1] <= BATCH for i in deletes), (table, seen)
            assert sum(seen[i][1] for i in deletes) == count, (table, seen)
            for first, then in itertools.pairwise(deletes):
                assert ("COMMIT", 0) in seen[first:then], (table, seen)
        messages = [i for i, (name, _) in enumerate(seen) if name == "messages"]
        assert ("bob", 1) in seen[messages[0] : messages[-1]], seen
        # The row last, alone: what it cascades to was gone by then.
        assert [name for name, _ in seen if name == "sessions"] == ["sessions"]
        assert seen.index(("sessions", 1)) > messages[-1]

        assert await _rows_of(api, alice["id"]) == dict.fromkeys(before, 0)
        assert (await _rows_of(api, bob["id"]))["set_aside_reports"] > 0
        error_of(await api.request("GET", f"/api/sessions/{alice['id']}"), 404, "SESSION_NOT_FOUND")
        error_of(await api.request("GET", "/api/sessions/alice"), 404, "SESSION_NOT_FOUND")
        listed = data_of(await api.request("GET", "/api/sessions"))
        assert [s["id"] for s in listed] == [bob["id"]], listed
        again = await api.request("DELETE", f"/api/sessions/{alice['id']}")
        error_of(again, 404, "SESSION_NOT_FOUND")
        assert await _logged_deletes(api, alice["id"]) == ["session.deleted"]
        # The name is free again.
        await api.create_session("alice", autoStart=False)


async def test_a_delete_cut_short_stays_hidden_and_is_finished_by_maintenance(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails between two batches of messages: the delete stands (200,
    then 404), its rows wait hidden, their tombstone is not swept; a directory loaded
    afresh (a restart, another instance) does not show the session, and one that held
    it drops it at its next refresh. The next start's maintenance finishes the delete,
    `session.deleted` logged once."""
    original = batches_module._delete
    messages_batches = 0

    async def failing(db: Any, prune: Prune, keys: Any) -> int:
        nonlocal messages_batches
        if prune.keys[0].table.name == "messages":
            messages_batches += 1
            if messages_batches == 2:
                raise OSError("the disk is gone")
        return await original(db, prune, keys)

    async with app_factory.running(webhook_allow_private=True) as api:
        alice = await _session_with_rows(api, "alice")
        _small_batches(api, monkeypatch)
        elsewhere = SessionDirectory()  # another instance's, loaded before the delete
        await elsewhere.load(api.services.db)
        assert elsewhere.get(alice["id"]) is not None
        monkeypatch.setattr(batches_module, "_delete", failing)
        response = await api.request("DELETE", f"/api/sessions/{alice['id']}")
        assert data_of(response) == {"id": alice["id"], "deleted": True}
        monkeypatch.setattr(batches_module, "_delete", original)

        left = await _rows_of(api, alice["id"])
        assert left["sessions"] == 1, left
        assert 0 < left["messages"] < MESSAGES, left
        error_of(await api.request("GET", f"/api/sessions/{alice['id']}"), 404, "SESSION_NOT_FOUND")
        assert data_of(await api.request("GET", "/api/sessions")) == []
        error_of(
            await api.request("DELETE", f"/api/sessions/{alice['id']}"), 404, "SESSION_NOT_FOUND"
        )
        # Its row was written a moment ago (the logout): dropped all the same.
        await elsewhere.refresh(api.services.db, [alice["id"]])
        assert elsewhere.get(alice["id"]) is None
        fresh = SessionDirectory()
        await fresh.load(api.services.db)
        assert fresh.get(alice["id"]) is None
        # Its tombstone waits for the row, however old.
        sweep = api.services.maintenance.media_sweep
        await sweep.empty_deleted(utcnow() + timedelta(days=1))
        async with api.services.db() as db:
            assert await db.get(MediaTombstoneRow, alice["id"]) is not None
        # Gone for clients, so announced: once, and not again when it is finished.
        assert await _logged_deletes(api, alice["id"]) == ["session.deleted"]

    # The restart: maintenance's first run, at the start, finishes it.
    async with app_factory.running(webhook_allow_private=True) as api:
        error_of(await api.request("GET", f"/api/sessions/{alice['id']}"), 404, "SESSION_NOT_FOUND")

        async def rows() -> dict[str, int]:
            return await _rows_of(api, alice["id"])

        await wait_for(rows, lambda r: not any(r.values()), FAILSAFE_S, "the delete's end")
        assert await _logged_deletes(api, alice["id"]) == ["session.deleted"]


async def test_a_delete_cut_short_frees_the_name_and_stops_the_webhooks(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hidden but not finished: its name answered 409 on create while GET and DELETE
    said 404, and its own webhooks went on posting until maintenance finished it."""
    original = batches_module._delete

    async def failing(db: Any, prune: Prune, keys: Any) -> int:
        if prune.keys[0].table.name == "messages":
            raise OSError("the disk is gone")
        return await original(db, prune, keys)

    async with app_factory.running(webhook_allow_private=True) as api:
        alice = await _session_with_rows(api, "alice")
        monkeypatch.setattr(batches_module, "_delete", failing)
        response = await api.request("DELETE", f"/api/sessions/{alice['id']}")
        assert data_of(response) == {"id": alice["id"], "deleted": True}
        monkeypatch.setattr(batches_module, "_delete", original)
        async with api.services.db() as db:
            hooks = (
                (
                    await db.execute(
                        select(WebhookRow.active).where(WebhookRow.session_id == alice["id"])
                    )
                )
                .scalars()
                .all()
            )
        assert hooks
        assert not any(hooks)
        assert await _logged_deletes(api, alice["id"]) == ["session.deleted"]
        # Nor does a key's scope find it, by id or by name.
        for ref in (alice["id"], "alice"):
            body = {"name": "scoped", "role": "viewer", "sessions": [ref]}
            error_of(await api.request("POST", "/api/keys", json=body), 400, "VALIDATION_ERROR")
        again = await api.create_session("alice", autoStart=False)
        assert again["id"] != alice["id"]
