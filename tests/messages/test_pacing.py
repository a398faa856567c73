"""Paced sends: a random gap between two messages a session hands to its engine, set
for the instance (`SEND_INTERVAL_MIN_MS`/`MAX_MS`) or per session (`config.sendInterval`).

The gaps are measured where the engine takes each message; a gap is never shorter than
the interval's minimum (a slow machine only makes it longer)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from openwa.config import Settings
from openwa.engines.mock.engine import MockClient
from openwa.messages.pacing import Pacing, SendInterval
from tests.fixtures.app import Api, AppFactory
from tests.messages.support import error_of, ready_session, send_text, wait_sent

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
    pacing.sent("alice", SendInterval(min_ms=10_000))
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
    pacing.sent("alice", SendInterval(min_ms=1_000))
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
