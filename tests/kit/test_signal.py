"""A ticket taken before looking for work catches a notify that comes while looking."""

from __future__ import annotations

import asyncio

from openwa.kit.signal import Signal

NEVER = 600.0  # a missed notify would wait this long: the test's failsafe fires first


async def test_a_notify_after_the_ticket_ends_the_wait_at_once() -> None:
    signal = Signal()
    ticket = signal.ticket()
    signal.notify()  # while the loop looks for work, before it waits
    await asyncio.wait_for(signal.wait(NEVER, ticket), 5)


async def test_a_notify_before_the_ticket_is_not_counted() -> None:
    signal = Signal()
    signal.notify()
    ticket = signal.ticket()
    waiting = asyncio.ensure_future(signal.wait(NEVER, ticket))
    await asyncio.sleep(0)
    assert not waiting.done()
    signal.notify()
    await asyncio.wait_for(waiting, 5)
