"""Paced sends: a random gap between two messages a session hands to its engine, set
for the instance (`SEND_INTERVAL_MIN_MS`/`MAX_MS`) or per session (`config.sendInterval`).

The gaps are measured where the engine takes each message; a gap is never shorter than
the interval's minimum (a slow machine only makes it longer)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from openwa.config import Settings
from openwa.engines.mock.engine import MockClient
from openwa.messages.pacing import Pacing, SendInterval
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import error_of, one_by_one, ready_session, send_text, wait_sent

OUTSIDER = "+1 555 0100 200"  # outside the mock network: sends go nowhere
GAP_MS = 300


def handed_times(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the mock engine takes each message, in order."""
    times: list[float] = []
    send_many = MockClient.send_many

    async def timed(self: MockClient, messages: Sequence[Any]) -> Any:
        times.extend(time.monotonic() for _ in messages)
        return await send_many(self, messages)

    monkeypatch.setattr(MockClient, "send_many", timed)
    return times


async def send_three(api: Api, session: str) -> None:
    ids = [(await send_text(api, session, OUTSIDER, f"paced {i}"))["id"] for i in range(3)]
    for message_id in ids:
        await wait_sent(api, session, message_id)


def assert_spaced(times: list[float], gap_ms: int) -> None:
    assert len(times) == 3, times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= gap_ms / 1000 for gap in gaps), gaps


async def test_the_instances_interval_spaces_a_sessions_sends(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = handed_times(monkeypatch)
    async with app_factory.running(send_interval_min_ms=GAP_MS) as api:
        await ready_session(api, "alice")
        await send_three(api, "alice")
    assert_spaced(times, GAP_MS)


async def test_a_sessions_interval_spaces_its_sends_and_is_shown(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = handed_times(monkeypatch)
    interval = {"minMs": GAP_MS, "maxMs": GAP_MS + 100}
    await ready_session(api, "alice", config={"sendInterval": interval})
    assert (await api.session("alice"))["config"]["sendInterval"] == interval
    await send_three(api, "alice")
    assert_spaced(times, GAP_MS)


async def test_a_backwards_interval_is_refused(api: Api) -> None:
    await api.create_session("alice", autoStart=False)
    response = await api.request(
        "PATCH",
        "/api/sessions/alice",
        json={"config": {"sendInterval": {"minMs": 500, "maxMs": 100}}},
    )
    error_of(response, 400, "VALIDATION_ERROR")
    with pytest.raises(ValidationError, match="SEND_INTERVAL_MAX_MS"):
        Settings(_env_file=None, send_interval_min_ms=500, send_interval_max_ms=100)


def test_which_interval_a_session_gets() -> None:
    instance = Pacing(SendInterval(min_ms=1000, max_ms=2000))
    assert instance.interval({}) == SendInterval(min_ms=1000, max_ms=2000)
    mine = {"sendInterval": {"minMs": 10, "maxMs": 20}}
    assert instance.interval(mine) == SendInterval(min_ms=10, max_ms=20)
    assert instance.interval({"sendInterval": {"minMs": 0}}) is None  # off for this one
    assert Pacing(SendInterval(min_ms=0)).interval({}) is None  # off by default
    assert Pacing(None).interval(None) is None
    # A stored value that no longer reads (edited by hand) falls back to the instance's
    # [before: None, the session sent at machine speed].
    backwards = {"sendInterval": {"minMs": 500, "maxMs": 100}}
    assert instance.interval(backwards) == SendInterval(min_ms=1000, max_ms=2000)
    assert Pacing(None).interval(backwards) is None


async def test_a_session_paced_no_more_leaves_the_worker_waiting(api: Api) -> None:
    """Its last gap was kept and, once passed, woke the worker at once, over and over
    (a claim each time: on SQLite the write lock), while the session stayed ready."""
    await ready_session(api, "alice", config={"sendInterval": {"minMs": 200}})
    await send_three(api, "alice")
    response = await api.request(
        "PATCH", "/api/sessions/alice", json={"config": {"sendInterval": {"minMs": 0}}}
    )
    assert response.status_code == 200, response.text
    sender = api.services.sender
    await sender.run_once()
    assert sender._pacing.wait_s() is None  # nothing to wake for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_outlives_a_pause_in_sending() -> None:
    """A session that stops sending for a while (reconnecting, held back, restarted)
    within its gap waits out the rest of it when it comes back; meanwhile the worker is
    not woken for it; an ended gap is forgotten. Before, the pause dropped the gap and
    the next message went at once."""
    clock = Clock()
    pacing = Pacing(None, clock)
    pacing.sent("alice", SendInterval(min_ms=10_000, max_ms=10_000))
    pacing.keep_only(["alice"])
    assert not pacing.may_send("alice")
    clock.now += 2
    pacing.keep_only([])  # alice cannot send for now
    assert pacing.wait_s() is None  # nothing to wake for
    clock.now += 3
    pacing.keep_only(["alice"])  # back within her gap
    assert not pacing.may_send("alice")
    assert pacing.wait_s() == pytest.approx(5.0)
    clock.now += 5
    assert pacing.may_send("alice")
    pacing.sent("alice", SendInterval(min_ms=1_000, max_ms=1_000))
    pacing.keep_only([])
    clock.now += 1
    pacing.keep_only([])  # her gap ended while she rested: forgotten
    assert pacing._resting == {}
    pacing.keep_only(["alice"])
    assert pacing.may_send("alice")
    assert pacing.wait_s() is None


async def test_a_session_restarted_within_its_gap_waits_out_the_rest(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = handed_times(monkeypatch)
    gap_ms = 1_500
    await ready_session(api, "alice", config={"sendInterval": {"minMs": gap_ms}})
    first = await send_text(api, "alice", OUTSIDER, "before the restart")
    await wait_sent(api, "alice", first["id"])
    assert (await api.request("POST", "/api/sessions/alice/stop")).status_code == 200
    await api.services.sender.run_once()  # the worker looks while alice cannot send
    assert (await api.request("POST", "/api/sessions/alice/start")).status_code == 200
    await api.wait_status("alice", "ready")
    second = await send_text(api, "alice", OUTSIDER, "after the restart")
    await wait_sent(api, "alice", second["id"])
    assert len(times) == 2, times
    assert times[1] - times[0] >= gap_ms / 1000


async def test_pacing_set_during_a_run_spaces_the_rest_of_it(app_factory: AppFactory) -> None:
    """An unpaced session's run is claimed whole (up to 500 sends): pacing set while it
    went out left the rest at machine speed, the config change answered 200 all the
    same. The rest is now given back, and goes out one gap at a time."""
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as api:
        alice = await ready_session(api, "alice")
        client = one_by_one(api, alice["id"], 0.1, safe=True)
        at = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
        ids = [
            (await send_text(api, "alice", OUTSIDER, f"m{i}", sendAt=at))["id"] for i in range(6)
        ]
        await wait_for(lambda: asyncio.sleep(0, len(client.begun)), lambda n: n >= 2, 20, "sends")
        interval = {"minMs": GAP_MS, "maxMs": GAP_MS}
        response = await api.request(
            "PATCH", "/api/sessions/alice", json={"config": {"sendInterval": interval}}
        )
        assert response.status_code == 200, response.text
        paced_from = time.monotonic()
        for message_id in ids:
            await wait_sent(api, "alice", message_id)
    later = [i for i, at_s in enumerate(client.begun_at) if at_s > paced_from]
    assert later, client.begun_at
    # From the send in hand at the change on, each is a gap after the one before.
    times = client.begun_at[later[0] - 1 :]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= GAP_MS / 1000 for gap in gaps), gaps


def test_only_a_minimum_gives_gaps_that_vary() -> None:
    """With only `minMs` (or `SEND_INTERVAL_MIN_MS`), every gap was exactly it: a
    regular interval, what WhatsApp restricts accounts for. The longest is now half as
    much again."""
    interval = SendInterval(min_ms=1000)
    assert interval.longest_ms == 1500
    assert SendInterval(min_ms=500_000).longest_ms == 600_000  # within the bound
    now = [0.0]
    pacing = Pacing(interval, clock=lambda: now[0])
    gaps = set()
    for _ in range(20):
        pacing.sent("s", interval)
        gaps.add(pacing._next_at["s"])
    assert len(gaps) > 1, gaps
    assert all(1.0 <= gap <= 1.5 for gap in gaps), gaps
