"""A message's events are logged in status order, whoever records the change.

The send worker records `sent` (with `message.sent`) and the session's runtime applies
the engine's acks, in separate transactions. An ack can be applied before the sender
has recorded its send; the log must still read `sent`, `delivered`, `read`, with
`message.sent` once (docs/delivery.md, "Message status").
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from openwa.db.models import SessionRow
from openwa.engines.base import MessageAck
from openwa.events.types import MESSAGE_ACK, MESSAGE_SENT
from openwa.messages.repository import MessageRepository
from openwa.queue import outbox
from tests.events.support import page_all
from tests.fixtures.app import SLOW_AUTH_DELAY_MS, Api, AppFactory, wait_for
from tests.messages.support import plus, ready_pair, send_text

CLIENTS = 20
PER_CLIENT = 5
FORWARD = ["sent", "delivered", "read"]


def _statuses(events: list[dict[str, Any]], message_id: str) -> list[str]:
    """The statuses a message's events record, in cursor order."""
    return [
        e["data"]["status"]
        for e in sorted(events, key=lambda e: e["cursor"])
        if e["event"] in (MESSAGE_SENT, MESSAGE_ACK) and e["data"].get("id") == message_id
    ]


async def test_concurrent_clients_see_each_message_logged_in_status_order(
    app_factory: AppFactory,
) -> None:
    async with app_factory.running(mock_ack_delay_ms=0) as api:
        alice, bob = await ready_pair(api)

        async def client(number: int) -> list[str]:
            return [
                (await send_text(api, "alice", plus(bob), f"client {number} message {n}"))["id"]
                for n in range(PER_CLIENT)
            ]

        ids = [m for batch in await asyncio.gather(*map(client, range(CLIENTS))) for m in batch]
        assert len(set(ids)) == CLIENTS * PER_CLIENT

        def all_read(events: list[dict[str, Any]]) -> bool:
            read = {
                e["data"]["id"]
                for e in events
                if e["event"] == MESSAGE_ACK and e["data"].get("status") == "read"
            }
            return read >= set(ids)

        events = await wait_for(
            lambda: page_all(api, sessions=alice["id"]), all_read, 60.0, "every message read"
        )
    wrong = {m: s for m in ids if (s := _statuses(events, m)) != FORWARD}
    assert not wrong, f"{len(wrong)} messages logged out of order: {list(wrong.items())[:5]}"


async def test_acks_before_the_send_is_recorded_imply_sent_first(api: Api) -> None:
    """The race made deterministic: the sender has handed a pending message to the engine,
    the engine's acks for `delivered` and `read` are applied, then the sender records."""
    alice, bob = await ready_pair(api)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    accepted = await send_text(api, "alice", plus(bob), "early acks", sendAt=later)
    message_id = accepted["id"]
    services = api.services
    async with services.db() as db:
        session = await db.get(SessionRow, alice["id"])
        job = await outbox.job_for(db, alice["id"], message_id)
        message = await MessageRepository(db).get(alice["id"], message_id)
    assert session is not None
    assert job is not None
    assert message is not None
    assert message.status == "pending"

    reports = [MessageAck(message_id, accepted["chatId"], s) for s in ("delivered", "read")]
    await services.reports.on_engine_events(session, list(reports))
    # The sender records its send of this one message as it records a run.
    await services.sender._record(session, [], [(job, message)], ["ENGINE-ID-1"])

    events = await page_all(api, sessions=alice["id"])
    assert _statuses(events, message_id) == FORWARD
    sent = [e for e in events if e["event"] == MESSAGE_SENT and e["data"]["id"] == message_id]
    assert len(sent) == 1
    assert sent[0]["data"]["status"] == "sent"
    async with services.db() as db:
        stored = await MessageRepository(db).get(alice["id"], message_id)
        left = await outbox.job_for(db, alice["id"], message_id)
    assert stored is not None
    assert stored.status == "read"
    assert stored.engine_id == "ENGINE-ID-1"
    assert left is None  # the job is done

    # The same acks again change nothing and log nothing.
    await services.reports.on_engine_events(session, list(reports))
    assert _statuses(await page_all(api, sessions=alice["id"]), message_id) == FORWARD


async def test_an_ack_for_a_pending_message_records_sent_then_the_ack(api: Api) -> None:
    alice, bob = await ready_pair(api)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    accepted = await send_text(api, "alice", plus(bob), "delivered first", sendAt=later)
    async with api.services.db() as db:
        session = await db.get(SessionRow, alice["id"])
    assert session is not None
    ack = MessageAck(accepted["id"], accepted["chatId"], "delivered")
    await api.services.reports.on_engine_events(session, [ack])
    events = await page_all(api, sessions=alice["id"])
    assert _statuses(events, accepted["id"]) == ["sent", "delivered"]
    sent = next(e for e in events if e["event"] == MESSAGE_SENT)
    assert sent["data"]["id"] == accepted["id"]
    assert sent["data"]["text"] == "delivered first"


async def test_concurrent_sweeps_fail_a_waiting_message_once(app_factory: AppFactory) -> None:
    """Sweeps of several instances (here three at once) fail each message one time."""
    async with app_factory.running(
        mock_auth_delay_ms=SLOW_AUTH_DELAY_MS, send_ready_timeout_s=0
    ) as api:
        await api.create_session("waiting", engine="mock")
        session = await api.wait_status("waiting", "qr_ready")
        ids = [
            (await send_text(api, "waiting", "+1 555 0100 300", f"waiting {n}"))["id"]
            for n in range(CLIENTS)
        ]
        sender = api.services.sender
        await asyncio.gather(*(sender.expire_waiting() for _ in range(3)))

        def failed_acks(events: list[dict[str, Any]]) -> Counter[str]:
            return Counter(
                e["data"]["id"]
                for e in events
                if e["event"] == MESSAGE_ACK and e["data"].get("status") == "failed"
            )

        events = await wait_for(
            lambda: page_all(api, sessions=session["id"]),
            lambda events: set(failed_acks(events)) >= set(ids),
            10.0,
            "every waiting message failed",
        )
    counts = failed_acks(events)
    assert all(counts[m] == 1 for m in ids), counts
    for m in ids:
        assert _statuses(events, m) == ["failed"]
