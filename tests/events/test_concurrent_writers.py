"""The log's cursors under concurrent writers: a reader paging from 0 misses nothing.

On PostgreSQL, sequence values become visible out of order when transactions commit
out of order; a reader that has passed cursor N must never have an event below N
appear later. Twenty writers append in their own transactions (some hold them open
for a while, some roll back) while readers page the log from cursor 0.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

from openwa.events.log import EventLog
from openwa.events.types import MESSAGE_RECEIVED, Event
from tests.fixtures.app import Api

WRITERS = 20
TRANSACTIONS = 8
DEADLINE_S = 90.0


class _Rollback(Exception):
    pass


async def _writer(api: Api, session_id: str, writer: int, committed: set[str]) -> None:
    log: EventLog = api.services.events
    rng = random.Random(writer)
    for n in range(TRANSACTIONS):
        size = rng.randint(1, 3)
        events = [
            Event(
                event=MESSAGE_RECEIVED,
                session_id=session_id,
                engine="mock",
                data={"id": f"w{writer}-t{n}-e{i}", "writer": writer, "n": n},
                metadata={"writer": str(writer)},
            )
            for i in range(size)
        ]
        hold_before = rng.random() < 0.3
        hold_after = rng.random() < 0.5
        roll_back = n % 5 == 3 and writer % 4 == 0
        try:
            async with api.services.db() as db, db.begin():
                if hold_before:
                    await asyncio.sleep(rng.uniform(0.005, 0.03))
                await log.append(db, events)
                if hold_after:
                    # Hold the transaction (and whatever it locked) open before commit.
                    await asyncio.sleep(rng.uniform(0.01, 0.06))
                if roll_back:
                    raise _Rollback
        except _Rollback:
            pass
        else:
            committed.update(e.id for e in events)
            log.appended.notify()
        await asyncio.sleep(rng.uniform(0, 0.01))


async def _http_reader(api: Api, session_id: str, done: asyncio.Event) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        response = await api.request(
            "GET",
            "/api/events",
            params={"after": cursor, "limit": 13, "sessions": session_id},
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        seen.extend(data["events"])
        cursor = data["nextCursor"]
        if not data["events"]:
            if done.is_set():
                # Every writer has committed: an empty page now means the reader is at
                # the end, and whatever it skipped it will never see.
                return seen
            await asyncio.sleep(0.005)
    raise AssertionError(f"the HTTP reader did not see every event in {DEADLINE_S}s")


async def _log_reader(api: Api, session_id: str, done: asyncio.Event) -> list[dict[str, Any]]:
    log: EventLog = api.services.events
    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        async with api.services.db() as db:
            batch = await log.after(db, cursor, 5, sessions=[session_id])
        for event in batch:
            assert event.cursor is not None
            seen.append({"id": event.id, "cursor": event.cursor})
            cursor = event.cursor
        if not batch:
            if done.is_set():
                return seen
            await asyncio.sleep(0.002)
    raise AssertionError(f"the log reader did not see every event in {DEADLINE_S}s")


def _check_reader(name: str, seen: list[dict[str, Any]], committed: set[str]) -> None:
    ids = [e["id"] for e in seen]
    cursors = [e["cursor"] for e in seen]
    assert len(ids) == len(set(ids)), f"{name} saw an event twice"
    assert all(a < b for a, b in itertools.pairwise(cursors)), f"{name} saw cursors out of order"
    missing = committed - set(ids)
    assert not missing, f"{name} missed {len(missing)} events: {sorted(missing)[:10]}"
    extra = set(ids) - committed
    assert not extra, f"{name} saw events that were rolled back: {sorted(extra)[:10]}"


async def test_readers_see_every_event_once_in_cursor_order_under_concurrent_writers(
    api: Api,
) -> None:
    session = await api.create_session("writers", engine="mock", autoStart=False)
    session_id = session["id"]
    # The session's own events (it was created) are part of what the readers see.
    initial = (
        await api.request("GET", "/api/events", params={"sessions": session_id, "limit": 1000})
    ).json()["data"]["events"]
    committed: set[str] = {e["id"] for e in initial}
    done = asyncio.Event()

    readers = [
        asyncio.create_task(_http_reader(api, session_id, done)),
        asyncio.create_task(_log_reader(api, session_id, done)),
    ]
    await asyncio.sleep(0.05)  # the readers are already paging when the writers start
    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(_writer(api, session_id, w, committed) for w in range(WRITERS))),
        timeout=DEADLINE_S,
    )
    done.set()
    writing_s = time.monotonic() - started
    http_seen, log_seen = await asyncio.wait_for(asyncio.gather(*readers), DEADLINE_S)

    written = len(committed) - len(initial)
    assert written >= 200, written  # a few hundred events in all
    _check_reader("the HTTP reader", http_seen, committed)
    _check_reader("the log reader", log_seen, committed)

    # A reader starting afterwards sees the same log, in the same order.
    final: list[str] = []
    cursor = 0
    while True:
        response = await api.request(
            "GET", "/api/events", params={"after": cursor, "limit": 1000, "sessions": session_id}
        )
        data = response.json()["data"]
        if not data["events"]:
            break
        final.extend(e["id"] for e in data["events"])
        cursor = data["nextCursor"]
    assert final == [e["id"] for e in http_seen]
    assert final == [e["id"] for e in log_seen]
    assert writing_s < DEADLINE_S
