"""A webhook deleted while its deliveries are claimed; a call that loses a deadlock.

A claim locks its deliveries, and deleting their webhook (the delete cascades to them)
waits for the claim. The claim used to write its rows twice: PostgreSQL checks the
foreign keys of a row its own transaction has already updated on every later update, key
changed or not, and that check waits for the webhook being deleted. A deadlock: the
delete was answered 500 (the soak benchmark met it 17 times in 40). And a call that does
lose a deadlock is done again (a delete, a config change: `db/retry.py`), or, once it
has lost every try, answered 503 with `Retry-After`: it wrote nothing, and may be sent
again as it was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

import openwa.db.retry as retry_module
import openwa.webhooks.worker as worker_module
from openwa.db.engine import create_engine, lost_a_deadlock
from openwa.kit.cipher import generate_key
from openwa.messages.repository import MessageRepository
from tests.fixtures.app import Api, wait_for
from tests.fixtures.locks import postgres_only, waiting
from tests.messages.support import plus, ready_pair, send_text
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    data_of,
    hooks_path,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)

FAILSAFE_S = 30.0
NEVER = 600.0


def _waiting_deletes(api: Api) -> Callable[[], Awaitable[int]]:
    return waiting(api, "DELETE FROM webhooks")


async def test_a_webhook_deleted_while_its_deliveries_are_claimed_is_deleted(
    apps: Apps, receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_only(database_url)
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


async def test_a_session_deleted_while_its_sends_are_recorded_is_deleted(
    apps: Apps, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with the send worker: recording `sent`, it locks the run's messages and
    wrote each twice (its status, then the engine's id), the second write checking the
    message's session, which the delete (cascading to the messages) holds."""
    postgres_only(database_url)
    api = await apps.start(mock_engine_ids="own", mock_ack_delay_ms=600_000)
    alice, bob = await ready_pair(api)
    paused, proceed = asyncio.Event(), asyncio.Event()
    lock_chats = MessageRepository.lock_chats

    async def pausing(repo: MessageRepository, session_id: str, ids: Any) -> Any:
        statuses = await lock_chats(repo, session_id, ids)
        if session_id == alice["id"] and not paused.is_set():
            paused.set()
            await proceed.wait()  # the record's transaction stays open, its rows locked
        return statuses

    monkeypatch.setattr(MessageRepository, "lock_chats", pausing)
    await send_text(api, "alice", plus(bob), "being recorded")
    await asyncio.wait_for(paused.wait(), FAILSAFE_S)
    deleting = asyncio.ensure_future(api.request("DELETE", f"/api/sessions/{alice['id']}"))
    try:
        # The delete takes the session's send jobs first (a batch of them), as the
        # worker does (jobs, then messages): it waits there, for the record's transaction.
        await wait_for(
            waiting(api, "DELETE FROM outbox_jobs"), bool, FAILSAFE_S, "the delete to wait"
        )
    finally:
        proceed.set()
    response = await deleting
    assert response.status_code == 200, response.text


async def test_a_call_that_loses_a_deadlock_on_its_last_try_is_answered_503(
    apps: Apps, receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction of the test's own makes the cycle: it locks the webhook's delivery,
    the delete (which cascades to it) waits for it, and it then waits for the webhook
    the delete holds. PostgreSQL breaks the cycle by rolling back the transaction whose
    deadlock check runs first: the delete's (after 1 s of waiting), the test's waiting
    5 s. Should the delete's check run before the cycle is made (the test stalled for a
    second between two statements), it finds none, the test's transaction is the one
    rolled back, and the round is made again. The delete has one try here: with more it
    is done again (the next test)."""
    postgres_only(database_url)
    monkeypatch.setattr(retry_module, "ATTEMPTS", 1)
    api = await apps.start()
    session = await ready_session(api)
    engine = create_engine(database_url)
    try:
        for _round in range(3):
            hook = await register(api, session["id"], receiver.url, events=["message.received"])
            path = f"/api/sessions/{session['id']}/webhooks/{hook['id']}"
            await inbound(api, session["id"], "locked")
            await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1), FAILSAFE_S)
            with capture_logs() as logs:
                response = await _in_a_cycle(
                    api, engine, hook["id"], partial(api.request, "DELETE", path)
                )
            if response is not None:
                break
            await api.request("DELETE", path)  # the round's webhook, before the next
        else:
            raise AssertionError("the test's own transaction lost every round")
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "NOT_READY"
    assert response.headers["Retry-After"] == "1"
    # The log says which locks met where, so that a deadlock can be traced.
    (logged,) = [e for e in logs if e["event"] == "database_conflict"]
    assert logged["sqlstate"] == "40P01"
    assert "waits for" in logged["detail"]
    assert "webhooks" in logged["context"] or "deliveries" in logged["context"]
    # Nothing of it was written: the webhook is there, and the same call now passes.
    assert (await api.request("GET", path)).status_code == 200
    assert (await api.request("DELETE", path)).status_code == 200


# The test's side of a cycle with a call that deletes a webhook: its deliveries locked
# first (the cascade waits for them), then the webhook (the delete holds it).
_WEBHOOK_CYCLE = (
    "SELECT id FROM deliveries WHERE webhook_id = :id FOR UPDATE",
    "SELECT id FROM webhooks WHERE id = :id FOR KEY SHARE",
    "DELETE FROM webhooks",
)
# The same with a session's delete: its webhooks first (as the workers hold them, for
# an update that changes no key: an event's fan-out, which holds them against deletes
# only, goes on beside it), then the session.
_SESSION_CYCLE = (
    "SELECT id FROM webhooks WHERE session_id = :id FOR NO KEY UPDATE",
    "SELECT id FROM sessions WHERE id = :id FOR KEY SHARE",
    # The delete's first step switches the session's webhooks off, its row held.
    "UPDATE webhooks",
)


async def _in_a_cycle(
    api: Api,
    engine: AsyncEngine,
    row_id: str,
    call: Callable[[], Awaitable[httpx.Response]],
    cycle: tuple[str, str, str] = _WEBHOOK_CYCLE,
) -> httpx.Response | None:
    """The answer of `call` (which deletes the row `row_id` with what refers to it: a
    webhook's DELETE, a PATCH of the config that lists it, a session's DELETE), or None
    when the test's transaction was the one rolled back. `cycle`: the test's two locks,
    and the statement of `call` that waits for the first."""
    first, then, waits = cycle
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("SET LOCAL deadlock_timeout = '5s'"))
        locked = await conn.execute(text(first), {"id": row_id})
        assert locked.first() is not None
        calling = asyncio.ensure_future(call())
        await wait_for(waiting(api, waits), bool, FAILSAFE_S, "the delete to wait")
        try:
            await conn.execute(text(then), {"id": row_id})
        except DBAPIError as exc:
            if not lost_a_deadlock(exc):
                raise
            await transaction.rollback()
            answered = await calling
            assert answered.status_code == 200, answered.text  # it went through instead
            return None
        await transaction.rollback()
        return await calling


@pytest.mark.parametrize("owner", ["session", "instance"])
async def test_a_webhook_delete_that_loses_a_deadlock_is_done_again(
    apps: Apps, receiver: Receiver, database_url: str, owner: str
) -> None:
    """The cycle of the test above, with the tries the delete has: it loses the first
    (nothing written), is done again once the test's transaction is gone, and passes.
    The same for a session's webhook and an instance-wide one (one service call)."""
    postgres_only(database_url)
    api = await apps.start(log_level="info")  # the retry is logged at info
    session = await ready_session(api)
    owner_id = session["id"] if owner == "session" else None
    engine = create_engine(database_url)
    try:
        for _round in range(3):
            hook = await register(api, owner_id, receiver.url, events=["message.received"])
            path = f"{hooks_path(owner_id)}/{hook['id']}"
            await inbound(api, session["id"], "locked")
            await wait_deliveries(api, owner_id, hook["id"], all_succeeded(1), FAILSAFE_S)
            with capture_logs() as logs:
                response = await _in_a_cycle(
                    api, engine, hook["id"], partial(api.request, "DELETE", path)
                )
            if response is not None:
                break
        else:
            raise AssertionError("the test's own transaction lost every round")
    finally:
        await engine.dispose()
    assert response.status_code == 200, response.text
    (retried,) = [e for e in logs if e["event"] == "webhook_delete_retried"]
    assert (retried["sqlstate"], retried["webhook_id"]) == ("40P01", hook["id"])
    assert not [e for e in logs if e["event"] == "database_conflict"]
    assert (await api.request("GET", path)).status_code == 404


async def test_a_session_delete_that_loses_a_deadlock_is_done_again(
    apps: Apps, receiver: Receiver, database_url: str
) -> None:
    """A session's delete switches its webhooks off (then its rows cascade to them),
    which the workers lock while they record: the test's transaction plays the worker,
    holding the session's webhook, then waiting for the session the delete holds. The
    delete loses, is done again, and passes."""
    postgres_only(database_url)
    api = await apps.start(log_level="info")
    engine = create_engine(database_url)
    try:
        for _round in range(3):
            session = await ready_session(api)
            # Not for `session.status`: the logout before the delete would wait for
            # the test's lock to queue its delivery.
            await register(api, session["id"], receiver.url, events=["message.received"])
            path = f"/api/sessions/{session['id']}"
            with capture_logs() as logs:
                response = await _in_a_cycle(
                    api,
                    engine,
                    session["id"],
                    partial(api.request, "DELETE", path),
                    _SESSION_CYCLE,
                )
            if response is not None:
                break
        else:
            raise AssertionError("the test's own transaction lost every round")
    finally:
        await engine.dispose()
    assert response.status_code == 200, response.text
    (retried,) = [e for e in logs if e["event"] == "session_delete_retried"]
    assert (retried["sqlstate"], retried["session_id"]) == ("40P01", session["id"])
    assert (await api.request("GET", path)).status_code == 404
    async with api.services.db() as db:
        left = await db.scalar(
            text("SELECT count(*) FROM webhooks WHERE session_id = :id"), {"id": session["id"]}
        )
    assert left == 0


async def test_a_config_change_that_loses_a_deadlock_is_done_again(
    apps: Apps, receiver: Receiver, database_url: str
) -> None:
    """Replacing a session's `config.webhooks` deletes the old ones with their
    deliveries, which the delivery worker may be recording meanwhile: the same cycle as
    above, with a PATCH. The PATCH wrote nothing when it lost, and nothing outside the
    database was done for it yet, so it is done again rather than answered 503."""
    postgres_only(database_url)
    api = await apps.start()
    events = ["message.received"]
    session = await ready_session(
        api, config={"webhooks": [{"url": receiver.url, "events": events}]}
    )
    path = f"/api/sessions/{session['id']}"
    engine = create_engine(database_url)
    try:
        for _round in range(3):
            listed = data_of(await api.request("GET", f"{path}/webhooks"))
            (hook,) = [h for h in listed if h["source"] == "config"]
            await inbound(api, session["id"], "locked")
            await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1), FAILSAFE_S)
            body = {"config": {"webhooks": [{"url": f"{receiver.url}?v=2", "events": events}]}}
            response = await _in_a_cycle(
                api, engine, hook["id"], partial(api.request, "PATCH", path, json=body)
            )
            if response is not None:
                break
        else:
            raise AssertionError("the test's own transaction lost every round")
    finally:
        await engine.dispose()
    assert response.status_code == 200, response.text
    listed = data_of(await api.request("GET", f"{path}/webhooks"))
    assert [h["url"] for h in listed if h["source"] == "config"] == [f"{receiver.url}?v=2"]
    assert all(h["id"] != hook["id"] for h in listed)


async def test_a_config_change_that_loses_a_deadlock_at_its_commit_is_done_again_whole(
    apps: Apps, receiver: Receiver, database_url: str
) -> None:
    """Lost at the commit's own flush, with secrets sealed (`ENCRYPTION_KEY`): the flush
    that failed had put encrypted values into the new webhook, and nothing put the clear
    ones back, so the change done again kept the old config in the database while it
    answered the new one. A trigger of the test's own makes the cycle: the session's
    update waits for an advisory lock the test holds, the test then waits for the
    session row the change holds."""
    postgres_only(database_url)
    api = await apps.start(encryption_key=generate_key())
    events = ["message.received"]
    config = {"markOnline": False, "webhooks": [{"url": receiver.url, "events": events}]}
    session = await ready_session(api, config=config)
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    hooks = [{"url": f"{receiver.url}?v=2", "events": events, "secret": secret}]
    body = {"config": {"markOnline": True, "webhooks": hooks}}
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(_BLOCKING_FUNCTION))
            await conn.execute(
                text(
                    "CREATE TRIGGER test_block BEFORE UPDATE ON sessions"
                    " FOR EACH ROW EXECUTE FUNCTION test_block()"
                )
            )
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(text("SET LOCAL deadlock_timeout = '5s'"))
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
            patching = asyncio.ensure_future(
                api.request("PATCH", f"/api/sessions/{session['id']}", json=body)
            )
            await wait_for(waiting(api, "UPDATE sessions"), bool, FAILSAFE_S, "the commit")
            with contextlib.suppress(DBAPIError):  # the change, or this, is rolled back
                await conn.execute(
                    text("SELECT id FROM sessions WHERE id = :id FOR UPDATE"),
                    {"id": session["id"]},
                )
            await transaction.rollback()
            answered = data_of(await patching)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_block ON sessions"))
            stored = (
                await conn.execute(
                    text("SELECT config::text FROM sessions WHERE id = :id"),
                    {"id": session["id"]},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert answered["config"]["markOnline"] is True
    assert answered["reconnectRequired"] is True
    assert [h["secret"] for h in answered["webhooks"]] == [secret]
    assert orjson.loads(stored) == {"markOnline": True}  # what it answered is what it wrote
    listed = data_of(await api.request("GET", f"/api/sessions/{session['id']}/webhooks"))
    assert [h["url"] for h in listed if h["source"] == "config"] == [f"{receiver.url}?v=2"]


_LOCK = 770_01
_BLOCKING_FUNCTION = f"""CREATE OR REPLACE FUNCTION test_block() RETURNS trigger AS $$
BEGIN PERFORM pg_advisory_xact_lock({_LOCK}); RETURN NEW; END $$ LANGUAGE plpgsql"""
