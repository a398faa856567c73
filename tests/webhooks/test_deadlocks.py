"""A webhook deleted while its deliveries are claimed; a call that loses a deadlock.

A claim locks its deliveries, and deleting their webhook (the delete cascades to them)
waits for the claim. The claim used to write its rows twice: PostgreSQL checks the
foreign keys of a row its own transaction has already updated on every later update, key
changed or not, and that check waits for the webhook being deleted. A deadlock: the
delete was answered 500 (the soak benchmark met it 17 times in 40). And a call that does
lose a deadlock is answered 503 with `Retry-After`: it wrote nothing, and may be sent
again as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

import openwa.webhooks.worker as worker_module
from openwa.db.engine import create_engine
from tests.fixtures.app import Api, wait_for
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)

FAILSAFE_S = 30.0
NEVER = 600.0


def _postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: its transactions cannot deadlock")


def _waiting_deletes(api: Api) -> Callable[[], Awaitable[int]]:
    """How many deletes of a webhook wait for a lock in this test's database."""

    async def fetch() -> int:
        async with api.services.db() as db:
            found = await db.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM webhooks%'"
                )
            )
        return int(found or 0)

    return fetch


async def test_a_webhook_deleted_while_its_deliveries_are_claimed_is_deleted(
    apps: Apps, receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(database_url)
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    worker = api.services.deliveries
    claimed, proceed = asyncio.Event(), asyncio.Event()
    failures: list[BaseException] = []
    claim_runs, claim = worker_module.claim_runs, worker._claim

    async def pausing(*args: Any, **kwargs: Any) -> Any:
        runs = await claim_runs(*args, **kwargs)
        if runs and not claimed.is_set():
            claimed.set()
            await proceed.wait()  # the claim's transaction stays open, its rows locked
        return runs

    async def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            return await claim(*args, **kwargs)
        except Exception as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(worker_module, "claim_runs", pausing)
    monkeypatch.setattr(worker, "_claim", recording)
    await inbound(api, session["id"], "claimed")
    await asyncio.wait_for(claimed.wait(), FAILSAFE_S)
    path = f"/api/sessions/{session['id']}/webhooks/{hook['id']}"
    deleting = asyncio.ensure_future(api.request("DELETE", path))
    try:
        await wait_for(_waiting_deletes(api), bool, FAILSAFE_S, "the delete to wait for the claim")
    finally:
        proceed.set()
    response = await deleting
    assert response.status_code == 200, response.text
    assert failures == []


async def test_a_call_that_loses_a_deadlock_is_answered_503_to_try_again(
    apps: Apps, receiver: Receiver, database_url: str
) -> None:
    """A transaction of the test's own makes the cycle: it locks the webhook's delivery,
    the delete (which cascades to it) waits for it, and it then waits for the webhook
    the delete holds. PostgreSQL breaks the cycle by rolling back the delete, whose
    deadlock check runs first (the test's waits 60 s before checking)."""
    _postgres_only(database_url)
    api = await apps.start()
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    await inbound(api, session["id"], "locked")
    await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1), FAILSAFE_S)
    path = f"/api/sessions/{session['id']}/webhooks/{hook['id']}"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(text("SET LOCAL deadlock_timeout = '60s'"))
            locked = await conn.execute(
                text("SELECT id FROM deliveries WHERE webhook_id = :id FOR UPDATE"),
                {"id": hook["id"]},
            )
            assert locked.first() is not None
            deleting = asyncio.ensure_future(api.request("DELETE", path))
            await wait_for(_waiting_deletes(api), bool, FAILSAFE_S, "the delete to wait")
            await conn.execute(
                text("SELECT id FROM webhooks WHERE id = :id FOR KEY SHARE"), {"id": hook["id"]}
            )
            response = await deleting
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "NOT_READY"
    assert response.headers["Retry-After"] == "1"
    # Nothing of it was written: the webhook is there, and the same call now passes.
    assert (await api.request("GET", path)).status_code == 200
    assert (await api.request("DELETE", path)).status_code == 200
