"""Idle SSE streams cost no database reads: they wait for the event pump, not a timer.

900 streams each polling once a second once made `GET /api/sessions` take 8.5 s. The
streams here run on an engine of their own, so a statement listener counts exactly
their reads. Heartbeats every few milliseconds drive the idle interval (each is a
wake-up-free turn of the stream's wait), so the test needs no long sleep: before the
fix every turn was a read; now none is, and an event costs each stream one read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.db.engine import create_session_factory
from openwa.errors import TooManyStreams
from openwa.events.log import EventLog
from openwa.events.service import EventService
from openwa.events.streams import StreamRegistry
from openwa.events.types import MESSAGE_RECEIVED, Event
from tests.fixtures.app import Api, wait_for

STREAMS = 20
TICKS = 5


def _event(text: str) -> Event:
    return Event(
        event=MESSAGE_RECEIVED,
        session_id="target",
        engine="mock",
        data={"id": text, "text": text},
        metadata={},
    )


class _LogReads:
    """Counts the reads of the event log or its cursor counter on `engine` (not the
    driver's own statements)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        sa_event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("SELECT") and (
            "FROM events" in statement or "FROM counters" in statement
        ):
            self.count += 1


class _Reader:
    """Consumes one stream in a task; counts heartbeats and keeps the events."""

    def __init__(self, stream: AsyncGenerator[Event | None]) -> None:
        self.stream = stream
        self.beats = 0
        self.events: list[str] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for item in self.stream:
            if item is None:
                self.beats += 1
            else:
                self.events.append(item.data["id"])

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.aclose()


def _service(api: Api, engine: AsyncEngine, fallback_s: float) -> EventService:
    """The app's event reader, reading on `engine` (whose statements are counted)."""
    return EventService(
        create_session_factory(engine),
        api.services.events,
        api.services.pump,
        fallback_s=fallback_s,
    )


async def _idle_turns(readers: list[_Reader]) -> None:
    """Until every stream has waited `TICKS` more times (a heartbeat each)."""
    marks = [r.beats for r in readers]
    await wait_for(
        lambda: asyncio.sleep(0, [r.beats - m for r, m in zip(readers, marks, strict=True)]),
        lambda beats: min(beats) >= TICKS,
        15,
        f"{TICKS} idle turns of every stream",
    )


async def test_idle_streams_read_only_when_woken_and_all_get_the_event(
    api: Api, stream_engine: AsyncEngine
) -> None:
    log: EventLog = api.services.events
    service = _service(api, stream_engine, fallback_s=3600)
    reads = _LogReads(stream_engine)
    async with api.services.db() as db:
        start = await log.last_cursor(db)
    readers = [
        _Reader(service.stream(start, ["target"], None, heartbeat_s=0.005)) for _ in range(STREAMS)
    ]
    try:
        # Each stream reads once to catch up (two statements), then only ticks.
        await wait_for(
            lambda: asyncio.sleep(0, [r.beats for r in readers]),
            lambda beats: min(beats) >= 1,
            15,
            "every stream idle",
        )
        idle_reads = reads.count
        assert idle_reads == 2 * STREAMS
        await _idle_turns(readers)
        assert reads.count == idle_reads, "idle streams read the database"

        # One event: the pump reads it and wakes them; each reads once and gets it.
        async with api.services.db() as db, db.begin():
            await log.append(db, [_event("woken")])
        await wait_for(
            lambda: asyncio.sleep(0, [r.events for r in readers]),
            lambda events: all(e == ["woken"] for e in events),
            15,
            "the event on every stream",
        )
        await _idle_turns(readers)
        assert reads.count == idle_reads + 2 * STREAMS
    finally:
        for reader in readers:
            await reader.stop()


async def test_a_revoked_stream_ends_and_an_idle_one_falls_back_to_a_rare_read(
    api: Api, stream_engine: AsyncEngine
) -> None:
    service = _service(api, stream_engine, fallback_s=0.01)
    registry = StreamRegistry(per_key=5, total=5)
    live = registry.open("key_1")
    stream = service.stream(0, ["target"], None, heartbeat_s=3600, live=live)
    reader = _Reader(stream)
    try:
        # Not woken, the stream still reads once per fallback interval (60 s in service).
        reads = _LogReads(stream_engine)
        await wait_for(
            lambda: asyncio.sleep(0, reads.count), lambda n: n >= 6, 15, "fallback reads"
        )
        registry.revoke("key_1")
        await asyncio.wait_for(reader.task, 15)
    finally:
        await reader.stop()
        live.release()
    assert registry.count() == 0


def test_the_registry_caps_frees_and_remembers_revoked_keys() -> None:
    registry = StreamRegistry(per_key=2, total=3)
    a1, a2 = registry.open("a"), registry.open("a")
    with pytest.raises(TooManyStreams) as over_key:
        registry.open("a")
    assert (over_key.value.status, over_key.value.code) == (429, "RATE_LIMITED")
    assert over_key.value.details["scope"] == "key"
    assert int(over_key.value.headers["Retry-After"]) > 0
    b1 = registry.open("b")
    with pytest.raises(TooManyStreams) as over_all:
        registry.open("b")
    assert over_all.value.details["scope"] == "instance"
    # A slot freed (twice is once) makes room again.
    a1.release()
    a1.release()
    assert registry.count() == 2
    assert registry.count("a") == 1
    a3 = registry.open("a")
    # Revoking ends the key's streams only; one registered just after starts revoked.
    registry.revoke("a")
    assert a2.revoked.is_set()
    assert a3.revoked.is_set()
    assert not b1.revoked.is_set()
    a2.release()
    a3.release()
    late = registry.open("a")
    assert late.revoked.is_set()
