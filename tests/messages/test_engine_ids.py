"""Acks that name a send by the engine's id before the sender has recorded that id.

An engine that cannot send under our id (whatsmeow, the mock with `MOCK_ENGINE_IDS=own`)
returns its own, which the send worker records with the run's outcomes. Its acks can come
before that record, and even before the engine returned the id (a worker process answers
later than its events arrive). Neither may be lost, and the log still reads `sent`,
`delivered`, `read` with `message.sent` once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from openwa.db.models import MessageRow, OutboxJobRow, SessionRow
from openwa.engines.base import MessageAck
from openwa.events.types import MESSAGE_SENT
from openwa.messages.engine_ids import EngineIds
from openwa.messages.repository import MessageRepository
from openwa.queue import outbox
from tests.events.support import page_all
from tests.fixtures.app import Api
from tests.messages.support import logged_statuses, plus, ready_pair, send_text

FORWARD = ["sent", "delivered", "read"]


def test_held_acks_come_back_under_our_id_once_the_engine_id_is_learned() -> None:
    ids = EngineIds(known=2, held=2)
    early = MessageAck("ENG1", "c@s.whatsapp.net", "delivered")
    assert ids.hold("s1", early) is True
    assert ids.ours("s1", "ENG1") == "ENG1"
    assert ids.learn("s2", [("ENG1", "OURS1")]) == []  # another session's send
    assert ids.learn("s1", [("ENG1", "OURS1")]) == [
        MessageAck("OURS1", "c@s.whatsapp.net", "delivered")
    ]
    assert ids.ours("s1", "ENG1") == "OURS1"
    assert ids.learn("s1", [("ENG1", "OURS1")]) == []  # released once
    # Known by now: not held, look it up again.
    assert ids.hold("s1", early) is False
    # Bounded: the oldest are forgotten first.
    ids.learn("s1", [("ENG2", "OURS2"), ("ENG3", "OURS3")])
    assert ids.ours("s1", "ENG1") == "ENG1"
    assert ids.ours("s1", "ENG3") == "OURS3"
    for n in range(3):
        ids.hold("s1", MessageAck(f"X{n}", "c", "read"))
    assert ids.learn("s1", [("X0", "O0")]) == []
    assert ids.learn("s1", [("X2", "O2")]) == [MessageAck("O2", "c", "read")]


def test_acks_held_for_one_id_are_bounded() -> None:
    """A message sent from the phone into a big group is never learned; its acks (one
    per member and status) stop being held past a few, and ids are forgotten in the
    order they were first held, however many acks keep coming for the oldest."""
    ids = EngineIds(known=2, held=2, per_id=3)
    for member in range(1000):
        ids.hold("s1", MessageAck("PHONE", f"{member}@s.whatsapp.net", "read"))
    released = ids.learn("s1", [("PHONE", "OURS")])
    assert [ack.chat_id for ack in released] == [f"{m}@s.whatsapp.net" for m in (997, 998, 999)]
    ids.hold("s1", MessageAck("A", "c", "read"))
    ids.hold("s1", MessageAck("B", "c", "read"))
    ids.hold("s1", MessageAck("A", "c", "played"))  # A first held: forgotten first
    ids.hold("s1", MessageAck("C", "c", "read"))
    assert ids.learn("s1", [("A", "OA")]) == []
    assert ids.learn("s1", [("B", "OB")]) == [MessageAck("OB", "c", "read")]


async def _pending(
    api: Api,
) -> tuple[SessionRow, OutboxJobRow, MessageRow, dict[str, Any]]:
    """A message the sender has not touched (scheduled for tomorrow), as the sender
    holds it when the engine has just taken it."""
    alice, bob = await ready_pair(api)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    accepted = await send_text(api, "alice", plus(bob), "by the engine's id", sendAt=later)
    async with api.services.db() as db:
        session = await db.get(SessionRow, alice["id"])
        job = await outbox.job_for(db, alice["id"], accepted["id"])
        message = await MessageRepository(db).get(alice["id"], accepted["id"])
    assert session is not None
    assert job is not None
    assert message is not None
    return session, job, message, accepted


async def _assert_forward_once(api: Api, session_id: str, message_id: str, engine_id: str) -> None:
    events = await page_all(api, sessions=session_id)
    assert logged_statuses(events, message_id) == FORWARD
    sent = [e for e in events if e["event"] == MESSAGE_SENT and e["data"]["id"] == message_id]
    assert len(sent) == 1
    async with api.services.db() as db:
        stored = await MessageRepository(db).get(session_id, message_id)
    assert stored is not None
    assert stored.status == "read"
    assert stored.engine_id == engine_id


async def test_acks_before_the_engine_returned_its_id_are_held_then_applied(api: Api) -> None:
    session, job, message, accepted = await _pending(api)
    services = api.services
    acks = [MessageAck("ENGINE-EARLY", accepted["chatId"], s) for s in ("delivered", "read")]
    await services.reports.on_engine_events(session, list(acks))
    # Nothing names the message yet: nothing changed, nothing logged, nothing lost.
    assert logged_statuses(await page_all(api, sessions=session.id), message.id) == []
    # The engine returns its id; the sender records the run and applies what was held.
    await services.sender._finish(session.id, session, [], [(job, message)], ["ENGINE-EARLY"])
    await _assert_forward_once(api, session.id, message.id, "ENGINE-EARLY")


async def test_acks_after_the_engine_returned_but_before_the_record(api: Api) -> None:
    session, job, message, accepted = await _pending(api)
    services = api.services
    # The engine has returned (the sender learned its id) but the run is not recorded:
    # the database knows no `engineId` yet, and the acks still find the message.
    services.sender._ids.learn(session.id, [("ENGINE-LATE", message.id)])
    acks = [MessageAck("ENGINE-LATE", accepted["chatId"], s) for s in ("delivered", "read")]
    await services.reports.on_engine_events(session, list(acks))
    assert logged_statuses(await page_all(api, sessions=session.id), message.id) == FORWARD
    await services.sender._finish(session.id, session, [], [(job, message)], ["ENGINE-LATE"])
    await _assert_forward_once(api, session.id, message.id, "ENGINE-LATE")
