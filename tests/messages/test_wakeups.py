"""A send that comes, or falls due, while the send worker looks for work goes at once.

The worker claims, finds nothing, asks when the next scheduled send is due, and then
waits. A send committed in between used to be missed until the idle poll: here the
poll is made 600 s, so only the wake-up can bring the send out in time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from openwa.kit.clock import utcnow
from openwa.queue import outbox
from tests.fixtures.app import Api, wait_for
from tests.messages.support import plus, ready_pair, send_text, wait_sent

NEVER = 600.0


async def test_a_send_accepted_while_the_worker_looks_is_sent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alice, bob = await ready_pair(api)
    worker = api.services.sender
    idle_wait = worker._idle_wait
    accepted: list[Any] = []

    async def looking(looked: datetime) -> float:
        wait = await idle_wait(looked)
        if not accepted:  # once: committed after the claim, before the wait begins
            accepted.append(await send_text(api, "alice", plus(bob), "while looking"))
        return wait

    monkeypatch.setattr(outbox, "LOOK_EVERY_S", NEVER)
    monkeypatch.setattr(worker, "_idle_wait", looking)
    # The worker may be mid-look, about to wait the new 600 s: wake it, so that it
    # comes round, looks through `looking`, and meets the send.
    worker._queued.notify()
    await wait_for(_made(accepted), bool, 15, "the worker to look for work")
    await wait_sent(api, "alice", accepted[0]["id"], timeout=15)


def _made(accepted: list[Any]) -> Any:
    async def fetch() -> list[Any]:
        return accepted

    return fetch


async def test_a_scheduled_send_that_falls_due_while_the_worker_looks_is_sent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next due time is asked for sends due after the look began, not after now: a
    send that fell due during the claim was "not after now" and waited for the next
    look. With looks 600 s apart, the accept (due within a look) wakes the worker."""
    _alice, bob = await ready_pair(api)
    worker = api.services.sender
    run_once = worker.run_once
    due = utcnow() + timedelta(seconds=1)
    slowed: list[bool] = []

    async def slow_look() -> int:
        claimed = await run_once()
        if not claimed and not slowed and utcnow() < due:
            slowed.append(True)  # the send falls due while this look goes on
            await asyncio.sleep((due - utcnow()).total_seconds() + 0.05)
        return claimed

    monkeypatch.setattr(outbox, "LOOK_EVERY_S", NEVER)
    monkeypatch.setattr(worker, "run_once", slow_look)
    scheduled = await send_text(api, "alice", plus(bob), "at due", sendAt=due.isoformat())
    await wait_sent(api, "alice", scheduled["id"], timeout=15)
    assert slowed, "no look was slowed past the due time: nothing was tested"
