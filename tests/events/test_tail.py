"""Tailing the log (SSE and the pump): no event is ever skipped, filtered-out ones are passed.

The skip test is deterministic: a hook on the stream's own engine commits an event from
another connection right after the stream's first statement of a read, i.e. exactly
between its two statements. Before the fix the stream then jumped its cursor past that
event (the cursor read by the second statement already counted it) and never sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

import openwa.events.tail as tail_module
from openwa.db.engine import create_session_factory
from openwa.events.bus import InMemoryEventBus, Subscription
from openwa.events.log import EventLog
from openwa.events.pump import EventPump
from openwa.events.service import EventService
from openwa.events.tail import Batch, read_batch
from openwa.events.types import MESSAGE_RECEIVED, Event
from tests.fixtures.app import Api


def _event(session_id: str, text: str) -> Event:
    return Event(
        event=MESSAGE_RECEIVED,
        session_id=session_id,
        engine="mock",
        data={"id": text, "text": text},
        metadata={},
    )


async def _append(api: Api, *events: Event) -> None:
    """Commit `events` on the app's own connections (not the stream's) and wake readers."""
    log: EventLog = api.services.events
    async with api.services.db() as db, db.begin():
        await log.append(db, list(events))
    log.appended.notify()


async def _last_cursor(api: Api) -> int:
    async with api.services.db() as db:
        return await api.services.events.last_cursor(db)


async def _take_until(
    stream: AsyncGenerator[Event | None], last_id: str, timeout: float = 15.0
) -> list[str]:
    """Ids of the events the stream yields, up to and including `last_id`."""
    seen: list[str] = []

    async def take() -> None:
        async for item in stream:
            if item is not None:
                seen.append(item.data["id"])
                if seen[-1] == last_id:
                    return

    await asyncio.wait_for(take(), timeout)
    return seen


async def test_an_event_committed_between_the_streams_two_reads_is_sent(
    api: Api, stream_engine: AsyncEngine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        # SQLite reads in a BEGIN IMMEDIATE transaction: no commit can land in between.
        pytest.skip("a PostgreSQL race (READ COMMITTED: one snapshot per statement)")
    service = EventService(
        create_session_factory(stream_engine), api.services.events, api.services.pump
    )
    await _append(api, _event("other", "before"))
    start = await _last_cursor(api)
    hooked = asyncio.Event()
    injected = asyncio.Event()

    @sa_event.listens_for(stream_engine.sync_engine, "after_cursor_execute")
    def between_reads(*args: Any) -> None:
        statement: str = args[2]
        if hooked.is_set() or not statement.lstrip().upper().startswith("SELECT"):
            return
        if "FROM events" not in statement and "FROM counters" not in statement:
            return
        hooked.set()
        # Runs inside the stream's statement (a greenlet): commit on another connection now.
        await_only(_append(api, _event("target", "between")))
        injected.set()

    stream = service.stream(start, ["target"], None)
    try:
        reading = asyncio.ensure_future(_take_until(stream, "after"))
        await asyncio.wait_for(injected.wait(), 15)
        await _append(api, _event("target", "after"))
        seen = await reading
    finally:
        await stream.aclose()
    assert seen == ["between", "after"], "the stream skipped the event committed between reads"


async def test_the_pump_never_steps_over_an_event_committed_after_someone_subscribed(
    api: Api, stream_engine: AsyncEngine, database_url: str
) -> None:
    """With nobody subscribed the pump steps over events by reading the log's mark. A
    client that subscribes while that read is on its way, and an event committed right
    then (before the statement runs, so the mark counts it), must still meet: the hook
    on the pump's own engine does both just before its statement goes out."""
    if not database_url.startswith("postgresql"):
        # SQLite reads in a BEGIN IMMEDIATE transaction: no commit can land in between.
        pytest.skip("a PostgreSQL race (READ COMMITTED: one snapshot per statement)")
    bus = InMemoryEventBus()
    pump = EventPump(create_session_factory(stream_engine), api.services.events, bus)
    await pump.start()
    subscribed: list[Subscription] = []
    injected = asyncio.Event()
    # Armed once "unheard" has committed: the pump's first read may run before it does,
    # and the event injected there would then come before "unheard" in the log.
    armed = asyncio.Event()

    @sa_event.listens_for(stream_engine.sync_engine, "before_cursor_execute")
    def before_the_mark(*args: Any) -> None:
        statement: str = args[2]
        if not armed.is_set() or subscribed or "FROM counters" not in statement:
            return
        subscribed.append(bus.subscribe())
        # Runs inside the pump's read (a greenlet): commit on another connection now.
        await_only(_append(api, _event("target", "joined")))
        injected.set()

    try:
        # Nobody listens: the pump steps over this one, reading the mark (the hook).
        await _append(api, _event("other", "unheard"))
        armed.set()
        await asyncio.wait_for(injected.wait(), 15)
        await _append(api, _event("target", "later"))
        (subscription,) = subscribed
        seen: list[str] = []
        while not seen or seen[-1] != "later":
            seen.append((await asyncio.wait_for(subscription.get(), 15)).data["id"])
    finally:
        await pump.stop()
    assert "joined" in seen, f"the pump stepped over an event its subscriber awaited: {seen}"
    assert seen[-2:] == ["joined", "later"]


async def test_a_read_passes_filtered_out_events_and_stops_at_what_it_has_read(api: Api) -> None:
    start = await _last_cursor(api)
    await _append(api, _event("other", "o1"), _event("target", "t1"), _event("other", "o2"))
    await _append(api, _event("target", "t2"), _event("other", "o3"))
    high = start + 5
    log = api.services.events

    async def read(after: int, limit: int) -> Batch:
        async with api.services.db() as db:
            return await read_batch(db, log, after, limit, sessions=["target"])

    # A full batch continues from its last event: what lies beyond was not read.
    first = await read(start, 1)
    assert [e.data["id"] for e in first.events] == ["t1"]
    assert (first.cursor, first.caught_up) == (start + 2, False)
    # A short batch has read everything up to the high-water mark: the cursor goes there,
    # past the filtered-out events, so they are not scanned again.
    rest = await read(first.cursor, 10)
    assert [e.data["id"] for e in rest.events] == ["t2"]
    assert (rest.cursor, rest.caught_up) == (high, True)
    empty = await read(rest.cursor, 10)
    assert (empty.events, empty.cursor, empty.caught_up) == ([], high, True)


async def test_the_stream_beats_when_idle_and_resumes_after_a_cursor(api: Api) -> None:
    service: EventService = api.services.event_reader
    start = await _last_cursor(api)
    await _append(api, _event("target", "t1"), _event("other", "o1"), _event("target", "t2"))
    # From `start + 1` (what Last-Event-ID names): the next event of the session, only.
    stream = service.stream(start + 1, ["target"], None, heartbeat_s=0.0)
    try:
        first = await asyncio.wait_for(anext(stream), 15)
        assert first is not None
        assert first.data["id"] == "t2"
        # Nothing more for it: a heartbeat (None), then the next event when it comes.
        assert await asyncio.wait_for(anext(stream), 15) is None
        await _append(api, _event("other", "o2"), _event("target", "t3"))
        assert await _take_until(stream, "t3") == ["t3"]
    finally:
        await stream.aclose()


async def test_an_event_committed_while_the_tail_reads_wakes_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event committed after a caught-up read, before the tail waits, used to be
    missed until the next poll; with the poll made 600 s only the wake-up brings it."""
    read = tail_module.read_batch
    appended: list[str] = []

    async def reading(*args: Any, **kwargs: Any) -> Batch:
        batch = await read(*args, **kwargs)
        if batch.caught_up and not appended:
            appended.append("while reading")
            await _append(api, _event("tailed", "while reading"))
        return batch

    monkeypatch.setattr(tail_module, "read_batch", reading)
    start = await _last_cursor(api)
    batches = tail_module.tail(
        api.services.db_read, api.services.events, start, sessions=["tailed"], poll_s=600.0
    )
    seen: list[str] = []

    async def take() -> None:
        async for batch in batches:
            seen.extend(e.data["id"] for e in batch.events)
            if appended and seen == appended:
                return

    try:
        await asyncio.wait_for(take(), 15)
    finally:
        await batches.aclose()
