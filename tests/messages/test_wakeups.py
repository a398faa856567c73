"""A send accepted while the send worker looks for work wakes it once it has looked.

The worker claims, finds nothing, asks when the next scheduled send is due, and then
waits. A send committed in between used to be missed until the idle poll: here the
poll is made 600 s, so only the wake-up can bring the send out in time.
"""

from __future__ import annotations

from typing import Any

import pytest

import openwa.messages.sender as sender_module
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

    async def looking() -> float:
        wait = await idle_wait()
        if not accepted:  # once: committed after the claim, before the wait begins
            accepted.append(await send_text(api, "alice", plus(bob), "while looking"))
        return wait

    monkeypatch.setattr(sender_module, "_IDLE_WAIT_S", NEVER)
    monkeypatch.setattr(worker, "_idle_wait", looking)
    # The worker comes round within its old poll, looks, and meets the send.
    await wait_for(_made(accepted), bool, 15, "the worker to look for work")
    await wait_sent(api, "alice", accepted[0]["id"], timeout=15)


def _made(accepted: list[Any]) -> Any:
    async def fetch() -> list[Any]:
        return accepted

    return fetch
