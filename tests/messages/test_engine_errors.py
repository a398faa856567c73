"""Engine failures: a message the engine refuses fails, and does not block the queue."""

from __future__ import annotations

from sqlalchemy import select

from openwa.db.models import OutboxJobRow
from tests.fixtures.app import Api
from tests.messages.support import (
    is_event,
    plus,
    ready_pair,
    recording,
    send_text,
    transmitted,
    transmitted_ids,
    wait_message,
    wait_sent,
)

# The mock refuses numbers under +1 555 0000: "not on WhatsApp", for good.
UNKNOWN = "+1 555 0000 123"
UNKNOWN_ADDRESS = "15550000123@s.whatsapp.net"


async def test_send_to_unknown_number_fails_and_the_queue_goes_on(api: Api) -> None:
    alice, bob = await ready_pair(api)
    async with recording(api) as events:
        before = await send_text(api, "alice", plus(bob), "before")
        doomed = await send_text(api, "alice", UNKNOWN, "nobody there")
        assert doomed["chatId"] == UNKNOWN_ADDRESS
        assert doomed["status"] == "pending"
        after = [await send_text(api, "alice", plus(bob), f"after {i}") for i in range(3)]

        failed = await wait_message(api, "alice", doomed["id"], "failed")
        assert failed["error"]
        assert "15550000123" in failed["error"]
        ack = await events.one(is_event("message.ack", alice["id"], id=doomed["id"]))
        assert ack.data["status"] == "failed"
        assert ack.data["chatId"] == UNKNOWN_ADDRESS
        assert ack.data.get("error")

        # The failed message does not hold back the ones behind it.
        received = await events.wait(is_event("message.received", bob["id"]), 4)
        assert [e.data["id"] for e in received] == [before["id"]] + [m["id"] for m in after]
        for message in after:
            await wait_sent(api, "alice", message["id"])
        # No `message.sent` for the failed one, and no ack other than `failed`.
        assert not events.matching(is_event("message.sent", alice["id"], id=doomed["id"]))
        acks = events.matching(is_event("message.ack", alice["id"], id=doomed["id"]))
        assert [a.data["status"] for a in acks] == ["failed"]

    # Failed for good: never transmitted, and still failed with the same error.
    assert doomed["id"] not in transmitted_ids(await transmitted(api, "alice"))
    assert (await wait_message(api, "alice", doomed["id"], "failed"))["error"] == failed["error"]
    async with api.services.db() as db:
        query = select(OutboxJobRow).where(OutboxJobRow.message_id == doomed["id"])
        job = (await db.execute(query)).scalar_one()
    assert job.done is True
    assert job.attempts == 1  # refused for good: not retried
    assert job.last_error
