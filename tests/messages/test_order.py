"""Per-session order: a session's messages go out, and arrive, in acceptance order."""

from __future__ import annotations

import time

from tests.fixtures.app import Api
from tests.messages.support import (
    is_event,
    plus,
    ready_pair,
    recording,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)

COUNT = 30


async def test_thirty_messages_arrive_in_acceptance_order(api: Api) -> None:
    _alice, bob = await ready_pair(api)
    async with recording(api) as events:
        started = time.monotonic()
        accepted = [await send_text(api, "alice", plus(bob), f"message {i}") for i in range(COUNT)]
        elapsed = time.monotonic() - started
        # Acceptance does not wait for the engine: 30 answers come quickly.
        assert elapsed < 10, elapsed
        assert all(m["status"] == "pending" for m in accepted)
        ids = [m["id"] for m in accepted]
        assert len(set(ids)) == COUNT

        received = await events.wait(is_event("message.received", bob["id"]), COUNT, 20)
    assert [e.data["id"] for e in received] == ids
    assert [e.data["text"] for e in received] == [f"message {i}" for i in range(COUNT)]

    await wait_sent(api, "alice", ids[-1])
    log = await transmitted(api, "alice")
    assert transmitted_ids(log) == ids
    assert [item["content"]["text"] for item in log] == [f"message {i}" for i in range(COUNT)]
    assert all(item["chatId"] == f"{bob['phoneNumber']}@s.whatsapp.net" for item in log)
    stamps = [item["at"] for item in log]
    assert stamps == sorted(stamps)


async def test_sessions_keep_their_own_order_side_by_side(api: Api) -> None:
    alice, bob = await ready_pair(api)
    async with recording(api) as events:
        to_bob: list[str] = []
        to_alice: list[str] = []
        for i in range(10):
            to_bob.append((await send_text(api, "alice", plus(bob), f"a{i}"))["id"])
            to_alice.append((await send_text(api, "bob", plus(alice), f"b{i}"))["id"])
        at_bob = await events.wait(is_event("message.received", bob["id"]), 10, 20)
        at_alice = await events.wait(is_event("message.received", alice["id"]), 10, 20)
    assert [e.data["id"] for e in at_bob] == to_bob
    assert [e.data["id"] for e in at_alice] == to_alice
