"""`DELETE` of a `pending` message never cancels one that a send worker's run is about to
send: the run keeps its claim alive while it sends (a run of many sends one by one, or
one slow send, outlasts any fixed lease), `DELETE` refuses a job held by a run or marked
handed over (409 `MESSAGE_NOT_PENDING`), and a run hands a job over only while it is
still its own. Before, a lease that ran out mid-run let `DELETE` answer `cancelled` for
a message that then went out anyway, staying `cancelled` with no `message.sent`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from openwa.db.models import MessageRow, OutboxJobRow
from openwa.engines.base import OutgoingMessage, SendResult
from openwa.engines.mock.engine import own_engine_id
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    error_of,
    get_message,
    one_by_one,
    plus,
    ready_pair,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)


async def delete(api: Api, message_id: str) -> Any:
    return await api.request("DELETE", f"/api/sessions/alice/messages/{message_id}")


async def test_a_slow_batch_keeps_its_messages_from_being_cancelled(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await ready_pair(api)
    # A short lease stands for the minute a slow send (a whatsmeow media upload may take
    # two) outlasts.
    monkeypatch.setattr(api.services.sender, "_lease_s", 0.6)
    client = api.services.runtime.client(alice["id"])
    real = client.send_many  # type: ignore[attr-defined]

    in_hand = asyncio.Event()

    async def slow(outgoing: Sequence[OutgoingMessage]) -> list[SendResult]:
        in_hand.set()
        await asyncio.sleep(2.0)
        result: list[SendResult] = await real(outgoing)
        return result

    monkeypatch.setattr(client, "send_many", slow)
    sent = await send_text(api, "alice", plus(bob), "please cancel me")
    # The send is in hand (on a loaded machine the worker may take a while to begin), then
    # past the first lease.
    await asyncio.wait_for(in_hand.wait(), 20)
    await asyncio.sleep(1.0)
    response = await delete(api, sent["id"])
    print("DELETE while the send is in hand:", response.status_code, response.text[:160])
    error_of(response, 409, "MESSAGE_NOT_PENDING")
    await wait_sent(api, "alice", sent["id"])
    assert transmitted_ids(await transmitted(api, "alice")) == [sent["id"]]


async def test_a_long_run_one_by_one_keeps_its_later_messages_from_being_cancelled(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as api:
        alice, bob = await ready_pair(api)
        monkeypatch.setattr(api.services.sender, "_lease_s", 1.5)
        client = one_by_one(api, alice["id"], 0.6)
        at = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
        ids = [
            (await send_text(api, "alice", plus(bob), f"m{i}", sendAt=at))["id"] for i in range(5)
        ]
        await wait_for(lambda: asyncio.sleep(0, len(client.begun)), lambda n: n >= 4, 10, "4 sends")
        # The run has been sending longer than its first lease; its last job is still its.
        response = await delete(api, ids[-1])
        print("DELETE of the run's last message:", response.status_code, response.text[:160])
        error_of(response, 409, "MESSAGE_NOT_PENDING")
        for i in ids:
            await wait_sent(api, "alice", i)
        went = transmitted_ids(await transmitted(api, "alice"))
    assert went == [own_engine_id(i) for i in ids]


async def test_a_job_cancelled_from_under_a_run_is_not_handed_over(
    app_factory: AppFactory,
) -> None:
    """However a job stopped being the run's (here written as a cancel that got in would
    leave it), the run does not hand it over: its mark, written just before the send, is
    written only on a job the run still holds."""
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as api:
        alice, bob = await ready_pair(api)
        client = one_by_one(api, alice["id"], 0.5)
        at = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
        ids = [
            (await send_text(api, "alice", plus(bob), f"m{i}", sendAt=at))["id"] for i in range(4)
        ]
        await wait_for(lambda: asyncio.sleep(0, len(client.begun)), lambda n: n >= 1, 10, "a send")
        async with api.services.db() as db, db.begin():
            await db.execute(
                update(OutboxJobRow).where(OutboxJobRow.message_id == ids[2]).values(done=True)
            )
            await db.execute(
                update(MessageRow).where(MessageRow.id == ids[2]).values(status="cancelled")
            )
        for i in (ids[0], ids[1], ids[3]):
            await wait_sent(api, "alice", i)
        went = transmitted_ids(await transmitted(api, "alice"))
        cancelled = await get_message(api, "alice", ids[2])
    print("transmitted:", went, "the cancelled one:", cancelled["status"])
    assert went == [own_engine_id(i) for i in (ids[0], ids[1], ids[3])]
    assert cancelled["status"] == "cancelled"


async def test_a_message_handed_over_before_a_crash_is_not_cancelled(
    app_factory: AppFactory,
) -> None:
    """Its job's lease is gone (the worker that had it died), but it may have gone out:
    `DELETE` refuses it, and it fails as `SEND_OUTCOME_UNKNOWN` when claimed again."""
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as api:
        _alice, bob = await ready_pair(api)
        await api.services.sender.stop()  # only this test's runs claim
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        cut = await send_text(api, "alice", plus(bob), "cut short", sendAt=later)
        async with api.services.db() as db, db.begin():
            await db.execute(
                update(OutboxJobRow)
                .where(OutboxJobRow.message_id == cut["id"])
                .values(handed_at=datetime.now(UTC), due_at=datetime.now(UTC))
            )
        response = await delete(api, cut["id"])
        print("DELETE of a message handed over before a crash:", response.status_code)
        error_of(response, 409, "MESSAGE_NOT_PENDING")
        assert await api.services.sender.run_once() == 1
        message = await get_message(api, "alice", cut["id"])
    assert (message["status"], message["errorCode"]) == ("failed", "SEND_OUTCOME_UNKNOWN")


async def test_a_run_whose_jobs_were_taken_over_hands_over_no_more(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lease renewal finds jobs of the run held by another instance now (the session
    moved, and the new owner took its sends back and claimed them): the run stops there,
    on an engine that resends safely too (no handed-over mark is written there)."""
    alice, bob = await ready_pair(api)
    monkeypatch.setattr(api.services.sender, "_lease_s", 0.9)
    client = one_by_one(api, alice["id"], 0.5, safe=True)
    at = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    ids = [(await send_text(api, "alice", plus(bob), f"m{i}", sendAt=at))["id"] for i in range(5)]
    await wait_for(lambda: asyncio.sleep(0, len(client.begun)), lambda n: n >= 1, 10, "a send")
    async with api.services.db() as db, db.begin():
        await db.execute(
            update(OutboxJobRow)
            .where(OutboxJobRow.message_id.in_(ids[2:]))
            .values(
                locked_by="another-instance", locked_until=datetime.now(UTC) + timedelta(minutes=1)
            )
        )
    await wait_sent(api, "alice", ids[0])
    await asyncio.sleep(1.5)  # time for two more sends, were the run going on
    went = transmitted_ids(await transmitted(api, "alice"))
    print("transmitted:", went)
    assert set(went) <= set(ids[:2]), went  # the one after the first may go in a run of its own
    for i in ids[2:]:
        assert (await get_message(api, "alice", i))["status"] == "pending"
