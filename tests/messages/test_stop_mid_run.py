"""A stop (a deploy) in the middle of a run on an engine that takes messages one by one
and cannot resend under our id (whatsmeow, whatsapp-web.js): only the message the engine
may have had is in doubt, never the ones behind it in the run.

Each job is marked handed over just before its own send; a stop lets the send in hand
finish and records what went, and gives back the rest untouched, so they go after the
restart. A stop that cannot wait for the send in hand (past its grace) leaves that one
in doubt (`SEND_OUTCOME_UNKNOWN`) and still only that one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from openwa.engines.mock.engine import own_engine_id
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    OneByOne,
    get_message,
    one_by_one,
    plus,
    ready_pair,
    send_text,
    transmitted,
    transmitted_ids,
)

COUNT = 8


async def queue_run(api: Api, to: str) -> list[str]:
    """COUNT texts due together in one second, so that one claim takes them as one run."""
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    return [(await send_text(api, "alice", to, f"m{i}", sendAt=at))["id"] for i in range(COUNT)]


async def outcomes(api: Api, ids: list[str]) -> list[tuple[str, str | None]]:
    found = [await get_message(api, "alice", i) for i in ids]
    return [(m["status"], m.get("errorCode")) for m in found]


async def stopped_mid_run(
    app_factory: AppFactory,
    *,
    sends_begun: int,
    before: Callable[[Api, OneByOne], None] | None = None,
) -> tuple[OneByOne, list[str]]:
    """A run of COUNT sends from alice, one by one, stopped gracefully (a deploy) once
    `sends_begun` of them have begun; `before` adjusts the app and the engine first.
    Returns alice's client and the messages' ids."""
    api, manager = await app_factory.start(mock_engine_ids="own", mock_ack_delay_ms=0)
    try:
        alice, bob = await ready_pair(api)
        client = one_by_one(api, alice["id"], 0.3)
        ids = await queue_run(api, plus(bob))
        if before is not None:
            before(api, client)
        await wait_for(
            lambda: asyncio.sleep(0, len(client.begun)),
            lambda n: n >= sends_begun,
            10,
            f"{sends_begun} sends",
        )
    finally:
        await app_factory.stop(api, manager)
    return client, ids


async def after_restart(
    app_factory: AppFactory, ids: list[str]
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Started again: every message's settled outcome, and the ids alice transmitted."""
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as again:
        await again.wait_status("alice", "ready")
        await wait_for(
            lambda: outcomes(again, ids),
            lambda found: all(status != "pending" for status, _code in found),
            10,
            "every message to be settled",
        )
        return await outcomes(again, ids), transmitted_ids(await transmitted(again, "alice"))


async def test_a_stop_mid_run_leaves_the_unsent_jobs_of_the_run_to_go_after_a_restart(
    app_factory: AppFactory,
) -> None:
    client, ids = await stopped_mid_run(app_factory, sends_begun=2)
    begun = len(client.begun)
    assert begun < COUNT, "the stop came too late to tell"

    found, went = await after_restart(app_factory, ids)
    print("sends begun before the stop:", begun, "outcomes after the restart:", found)
    wire = [own_engine_id(i) for i in ids]  # the ids the mock sent them under
    # The send in hand finished within the stop's grace: nothing is in doubt, every
    # message went once, in order.
    assert [code for _status, code in found] == [None] * COUNT, found
    assert went == wire
    # Each send began with its own job marked, and no job behind it.
    assert client.marked_at_send == [set(ids[: n + 1]) for n in range(begun)]


async def test_a_stop_past_its_grace_leaves_only_the_send_in_hand_in_doubt(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def past_the_grace(api: Api, client: OneByOne) -> None:
        client.hang_at = 2  # the third send outlasts the stop's grace: cut short mid-send
        monkeypatch.setattr(api.services.sender, "_stop_grace_s", 0.2, raising=False)

    client, ids = await stopped_mid_run(app_factory, sends_begun=3, before=past_the_grace)
    begun = len(client.begun)
    assert begun == 3, begun

    found, went = await after_restart(app_factory, ids)
    print("sends begun before the stop:", begun, "outcomes after the restart:", found)
    wire = [own_engine_id(i) for i in ids]
    cut = begun - 1  # the send that hung when the stop came
    codes = [code for _status, code in found]
    assert codes == [None] * cut + ["SEND_OUTCOME_UNKNOWN"] + [None] * (COUNT - cut - 1), found
    assert went == wire[:cut] + wire[cut + 1 :]


async def test_a_run_that_fails_leaves_no_other_run_unwatched(api: Api) -> None:
    """The runs of one claim are waited for together: when one failed, the wait used to
    end while the others went on sending, unseen by a stop (which then gave their
    claims back and let them go on)."""
    alice, bob = await ready_pair(api)
    sender = api.services.sender
    send_run = sender._send_run
    gate = asyncio.Event()
    started: set[str] = set()

    async def run(jobs: list, *args: object) -> None:  # type: ignore[type-arg]
        session_id = jobs[0].session_id
        started.add(session_id)
        if session_id == alice["id"]:
            raise RuntimeError("this run's record failed")
        await gate.wait()
        await send_run(jobs, *args)

    sender._send_run = run  # type: ignore[method-assign]
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    await send_text(api, "alice", plus(bob), "fails", sendAt=at)
    sent = await send_text(api, "bob", plus(alice), "goes", sendAt=at)
    try:
        await wait_for(
            lambda: asyncio.sleep(0, set(started)),
            lambda now: now == {alice["id"], bob["id"]},
            10,
            "both runs",
        )
        for _ in range(5):
            await asyncio.sleep(0)
        assert sender._active == 1, "the run still sending is no longer watched"
    finally:
        gate.set()
    await wait_for(
        lambda: get_message(api, "bob", sent["id"]), lambda m: m["status"] != "pending", 10
    )


async def test_the_record_of_a_run_cut_short_is_bounded_by_the_grace(api: Api) -> None:
    """A run cancelled by a stop records what went, for up to the stop's grace: the run
    was cancelled once already, and no second cancel would come to bound a record the
    database keeps waiting (it held the stop, and the sessions' share of the
    shutdown's time with it)."""
    sender = api.services.sender
    sender._stop_grace_s = 0.2
    record_ended = asyncio.Event()

    async def record() -> None:
        try:
            await asyncio.sleep(30)  # a database that does not answer
        finally:
            record_ended.set()

    async def run() -> None:
        try:
            await asyncio.sleep(30)  # the send in hand
        except asyncio.CancelledError:
            await sender._settle(record(), cut_short=True)
            raise

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert record_ended.is_set()  # cut short, not left running
