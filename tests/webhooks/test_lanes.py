"""Delivery lanes: a slow receiver slows only itself, within WEBHOOK_CONCURRENCY.

Every webhook has a path of its own on the one loopback receiver; a slow webhook is a
path whose answers are held on an asyncio.Event until the test has seen what it waits
for elsewhere. WEBHOOK_TIMEOUT_S is far above the failsafe, so nothing here passes by a
timeout running out: only lanes that do not wait for each other make the fast
deliveries arrive while the slow ones are held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

import openwa.webhooks.worker as worker_module
from openwa.db.models import DeliveryAttemptRow, DeliveryRow
from openwa.events.types import MESSAGE_RECEIVED, Event
from openwa.kit.clock import utcnow
from tests.events.support import page_all
from tests.fixtures.app import Api, wait_for
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Received, Receiver
from tests.webhooks.support import (
    all_succeeded,
    deliveries,
    inbound,
    message_ids,
    ready_session,
    register,
    wait_deliveries,
)

# No attempt may time out during a test: a held request stays held until released.
NEVER = 600.0
# Only against a hang: the conditions below are met in well under a second of work.
FAILSAFE_S = 30.0


async def _delivered(api: Api, session_id: str, webhook_id: str, n: int, what: str) -> None:
    """Wait until the webhook's `n` deliveries have all succeeded."""
    await wait_deliveries(
        api, session_id, webhook_id, all_succeeded(n), timeout=FAILSAFE_S, what=what
    )


class Paths:
    """Answers per path: held paths wait for `release`; `check` runs after each request."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.held: set[str] = set()
        self.release = asyncio.Event()
        self.check: Callable[[], None] = lambda: None
        self.failing: dict[str, str] = {}  # path -> the event id answered 503 until healed
        self.healed = asyncio.Event()
        receiver.respond = self._respond

    def url(self, path: str) -> str:
        return f"{self.receiver.base}{path}"

    def at(self, path: str) -> list[Received]:
        return self.receiver.of("message.received", path=path)

    async def _respond(self, request: Received) -> int:
        self.check()
        if request.path in self.held:
            await self.release.wait()
        if request.path in self.failing:
            head = self.failing[request.path] or request.payload["id"]
            self.failing[request.path] = head
            if request.payload["id"] == head and not self.healed.is_set():
                return 503
        return 200


async def _until(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), FAILSAFE_S)
    except TimeoutError:
        raise AssertionError(f"failsafe: {what} did not happen") from None


async def test_a_held_receiver_does_not_hold_back_other_webhooks(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_timeout_s=NEVER)
    one, two = await ready_session(api), await ready_session(api)
    paths = Paths(receiver)
    paths.held.add("/s")
    events = ["message.received"]
    slow = await register(api, one["id"], paths.url("/s"), events=events)
    await register(api, one["id"], paths.url("/f1"), events=events)
    await register(api, two["id"], paths.url("/f2"), events=events)
    seen = asyncio.Event()

    def check() -> None:
        if len(paths.at("/f1")) >= 20 and len(paths.at("/f2")) >= 20:
            seen.set()

    paths.check = check
    try:
        first = await inbound(api, one["id"], "held at S")
        await receiver.wait_for(lambda _: len(paths.at("/s")) == 1, what="S holding its first")
        sent_one = [first] + [await inbound(api, one["id"], f"one {i}") for i in range(20)]
        sent_two = [await inbound(api, two["id"], f"two {i}") for i in range(20)]

        await _until(seen, "20 deliveries at F1 and 20 at F2 while S is held")
        # S is still on its first request, unanswered: the 40 came while it was held.
        [held] = paths.at("/s")
        assert held.answered is None
        assert message_ids([held]) == [first]
        # The held delivery's lease covers its request's whole timeout.
        async with api.services.db() as db:
            lease = (
                await db.execute(
                    select(DeliveryRow.locked_until).where(
                        DeliveryRow.webhook_id == slow["id"], DeliveryRow.event_id == held.event_id
                    )
                )
            ).scalar_one()
        assert lease is not None
        assert lease > utcnow() + timedelta(seconds=NEVER)
    finally:
        paths.release.set()

    await receiver.wait_for(
        lambda _: [len(paths.at(p)) for p in ("/s", "/f1", "/f2")] == [21, 21, 20],
        timeout=FAILSAFE_S,
        what="every delivery once S is released",
    )
    assert message_ids(paths.at("/s")) == sent_one
    assert message_ids(paths.at("/f1")) == sent_one
    assert message_ids(paths.at("/f2")) == sent_two
    await wait_deliveries(
        api,
        one["id"],
        slow["id"],
        all_succeeded(21),
        what="S's deliveries recorded",
    )


async def test_more_held_webhooks_than_the_bound_leave_a_fast_one_going(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_timeout_s=NEVER, webhook_concurrency=2)
    session = await ready_session(api)
    paths = Paths(receiver)
    slow_paths = [f"/s{i}" for i in range(4)]
    paths.held.update(slow_paths)
    events = ["message.received"]
    # Registered first, so the oldest deliveries are all theirs and are claimed first.
    for path in slow_paths:
        await register(api, session["id"], paths.url(path), events=events)
    fast = await register(api, session["id"], paths.url("/f"), events=events)
    enough = asyncio.Event()

    def check() -> None:
        if len(paths.at("/f")) >= 11:
            enough.set()

    paths.check = check
    try:
        first = await inbound(api, session["id"], "held at every S")
        await receiver.wait_for(
            lambda _: all(len(paths.at(p)) == 1 for p in slow_paths),
            timeout=FAILSAFE_S,
            what="all four slow webhooks holding a request",
        )
        later = [await inbound(api, session["id"], f"later {i}") for i in range(10)]

        await _until(enough, "11 deliveries at the fast webhook while four are held")
        for path in slow_paths:
            [held] = paths.at(path)
            assert held.answered is None, path
        assert message_ids(paths.at("/f")) == [first, *later]
    finally:
        paths.release.set()

    await _delivered(api, session["id"], fast["id"], 11, "the fast webhook's deliveries recorded")
    await receiver.wait_for(
        lambda _: all(len(paths.at(p)) == 11 for p in slow_paths),
        timeout=FAILSAFE_S,
        what="the slow webhooks to catch up once released",
    )
    for path in slow_paths:
        assert message_ids(paths.at(path)) == [first, *later], path


async def test_lanes_keep_order_and_a_retried_head_holds_back_only_its_group(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_attempts=1000)
    session = await ready_session(api)
    paths = Paths(receiver)
    paths.failing["/retried"] = ""  # its first event is answered 503 until healed
    events = ["message.received"]
    retried = await register(api, session["id"], paths.url("/retried"), events=events)
    ordered = await register(api, session["id"], paths.url("/ordered"), events=events)

    sent = [await inbound(api, session["id"], f"message {i}") for i in range(50)]

    # The other webhook gets all 50, in cursor order, while the head of /retried fails.
    await _delivered(
        api, session["id"], ordered["id"], 50, "the 50 deliveries to the other webhook"
    )
    assert message_ids(paths.at("/ordered")) == sent
    await receiver.wait_for(
        lambda _: len(paths.at("/retried")) >= 3,
        timeout=FAILSAFE_S,
        what="the head of /retried to be tried three times",
    )
    held_back = await deliveries(api, session["id"], retried["id"])
    assert [d["status"] for d in held_back] == ["pending"] * 50
    assert held_back[0]["attempts"] >= 1
    assert [d["attempts"] for d in held_back[1:]] == [0] * 49
    assert set(message_ids(paths.at("/retried"))) == {sent[0]}

    paths.healed.set()
    await wait_deliveries(
        api,
        session["id"],
        retried["id"],
        lambda ds: {d["status"] for d in ds} == {"succeeded"},
        timeout=FAILSAFE_S,
        what="/retried to get all 50 once healed",
    )
    answered = [r for r in paths.at("/retried") if r.ok]
    assert message_ids(answered) == sent
    assert all(r.headers["webhook-id"] == r.payload["id"] for r in paths.at("/retried"))


async def test_a_record_that_fails_behind_the_requests_loses_no_delivery(
    apps: Apps, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane records a batch of successes while its next requests go out; when such a
    record fails, the lane gives its deliveries back and they go again, with the same
    `webhook-id`: at least once, never lost."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    paths = Paths(receiver)
    paths.held.add("/hook")  # the first request waits until every message is in
    hook = await register(api, session["id"], paths.url("/hook"), events=["message.received"])
    worker = api.services.deliveries
    write_results = worker._write_results
    failed: dict[int, int] = {}  # first delivery id of a failed batch -> failures
    sizes: list[int] = []

    async def failing(succeeded: list[Any], *args: Any) -> None:
        # The first full batch (recorded behind the requests) fails, alone and in its group.
        first = succeeded[0][0].id if len(succeeded) >= 20 else None
        if first is not None and (not failed or first in failed) and failed.get(first, 0) < 2:
            failed[first] = failed.get(first, 0) + 1
            sizes.append(len(succeeded))
            raise RuntimeError("the results write failed")
        await write_results(succeeded, *args)

    monkeypatch.setattr(worker, "_write_results", failing)
    sent = [await inbound(api, session["id"], f"message {i}") for i in range(60)]
    paths.release.set()

    await _delivered(api, session["id"], hook["id"], 60, "every delivery to succeed")
    assert sizes, "no batch recorded behind the requests failed: nothing was tested"
    received = paths.at("/hook")
    assert set(message_ids(received)) == set(sent)
    assert len(received) > len(sent)  # the unrecorded batch went again
    assert all(r.headers["webhook-id"] == r.payload["id"] for r in received)


async def test_no_claim_is_made_while_every_active_webhook_has_a_lane(
    apps: Apps, receiver: Receiver
) -> None:
    """New events wake the dispatcher; with a lane for every webhook it reads the
    webhooks instead of claiming (the lanes claim their own next rounds)."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    paths = Paths(receiver)
    paths.held.update({"/s", "/t"})
    events = ["message.received"]
    for path in ("/s", "/t"):
        await register(api, session["id"], paths.url(path), events=events)
    claims: list[str] = []

    def record(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("SELECT") and "FROM deliveries" in statement:
            claims.append(statement)

    engine = api.services.db_engine.sync_engine
    try:
        first = await inbound(api, session["id"], "held at both")
        await receiver.wait_for(
            lambda _: len(paths.at("/s")) == len(paths.at("/t")) == 1,
            what="both lanes holding their first",
        )
        event.listen(engine, "before_cursor_execute", record)
        try:
            second = await inbound(api, session["id"], "behind it")
            # The mock applies an inbound message after answering: wait until it is
            # logged (and fanned out), so the dispatcher has been woken by it.
            await wait_for(
                lambda: page_all(api),
                lambda events: second in [e["data"].get("id") for e in events],
                FAILSAFE_S,
                "the second message logged",
            )
            assert await api.services.deliveries.run_once() == 0
            assert claims == []
            # A webhook without a lane: the dispatcher claims again.
            await register(api, session["id"], paths.url("/u"), events=events)
            assert await api.services.deliveries.run_once() == 0
            assert claims
        finally:
            event.remove(engine, "before_cursor_execute", record)
    finally:
        paths.release.set()
    await receiver.wait_for(
        lambda _: len(paths.at("/s")) == len(paths.at("/t")) == 2,
        timeout=FAILSAFE_S,
        what="both deliveries at both webhooks once released",
    )
    assert message_ids(paths.at("/s")) == message_ids(paths.at("/t")) == [first, second]


async def test_an_event_appended_while_the_dispatcher_claims_wakes_it(
    apps: Apps, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event committed after a claim's read, before the dispatcher waits, used to be
    missed until the idle poll; with the poll made 600 s only the wake-up delivers it."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    await register(api, session["id"], receiver.url, events=["message.received"])
    worker = api.services.deliveries
    dispatch = worker._dispatch
    sent: list[str] = []

    async def claiming() -> Any:
        lanes = await dispatch()
        if not sent and not lanes:  # once: committed after the claim found nothing
            # One event, one wake-up: nothing else comes along to wake the worker.
            event = Event(
                event=MESSAGE_RECEIVED,
                session_id=session["id"],
                engine="mock",
                data={"id": "while-claiming", "text": "while claiming"},
                metadata={},
            )
            async with api.services.db() as db, db.begin():
                await api.services.events.append(db, [event])
            api.services.events.appended.notify()
            sent.append("while-claiming")
        return lanes

    monkeypatch.setattr(worker_module, "_IDLE_WAIT_S", NEVER)
    monkeypatch.setattr(worker, "_dispatch", claiming)
    # The dispatcher may be mid-claim, about to wait the new 600 s: wake it, so that
    # it comes round and claims through `claiming`.
    worker._wake.notify()
    await receiver.wait_for(
        lambda _: bool(sent) and message_ids(receiver.of("message.received")) == sent,
        timeout=FAILSAFE_S,
        what="the event appended during a claim to be delivered",
    )


async def test_a_replay_of_a_delivery_going_out_leaves_it_to_its_lane(
    apps: Apps, receiver: Receiver
) -> None:
    """Replaying a delivery whose request is in flight changes nothing: it goes once,
    and its lane records it."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    paths = Paths(receiver)
    paths.held.add("/hook")
    hook = await register(api, session["id"], paths.url("/hook"), events=["message.received"])
    try:
        sent = await inbound(api, session["id"], "in flight")
        await receiver.wait_for(lambda _: len(paths.at("/hook")) == 1, what="the request held")
        [delivery] = await deliveries(api, session["id"], hook["id"])
        path = (
            f"/api/sessions/{session['id']}/webhooks/{hook['id']}/deliveries/{delivery['id']}/retry"
        )
        response = await api.request("POST", path)
        assert response.status_code == 200, response.text
        replayed = response.json()["data"]
        assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
        # Its lease stands: no other instance may claim it and send it beside the
        # held request (this one's own lanes leave a webhook in flight alone).
        async with api.services.db() as db:
            lease = await db.scalar(
                select(DeliveryRow.locked_until).where(DeliveryRow.id == delivery["id"])
            )
        assert lease is not None
        assert lease > utcnow() + timedelta(seconds=60)
        assert await api.services.deliveries.run_once() == 0
    finally:
        paths.release.set()
    await _delivered(api, session["id"], hook["id"], 1, "the held delivery")
    assert message_ids(paths.at("/hook")) == [sent]
    [done] = await deliveries(api, session["id"], hook["id"])
    assert (done["status"], done["attempts"]) == ("succeeded", 1)


@pytest.mark.parametrize("answer", [200, 503])
async def test_a_lane_whose_lease_was_taken_over_records_nothing(
    apps: Apps, receiver: Receiver, answer: int
) -> None:
    """A lane whose lease ran out while its request was out (its instance paused past
    it) finds the delivery taken by another instance when the answer comes: the other's
    request is the one that counts. Recording ours cleared the other's lease, so a third
    claim could send it beside it, or marked a delivery still being sent as done."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    paths = Paths(receiver)
    paths.held.add("/hook")
    if answer != 200:
        paths.failing["/hook"] = ""
    hook = await register(api, session["id"], paths.url("/hook"), events=["message.received"])
    worker = api.services.deliveries
    taken_until = utcnow() + timedelta(hours=1)
    try:
        await inbound(api, session["id"], "taken over")
        await receiver.wait_for(lambda _: len(paths.at("/hook")) == 1, what="the request held")
        async with api.services.db() as db, db.begin():
            await db.execute(
                update(DeliveryRow)
                .where(DeliveryRow.webhook_id == hook["id"])
                .values(locked_by="another-instance", locked_until=taken_until)
            )
    finally:
        paths.release.set()
    await wait_for(_lanes_of(worker), lambda lanes: not lanes, FAILSAFE_S, "the lane to end")
    async with api.services.db() as db:
        row = await db.scalar(select(DeliveryRow).where(DeliveryRow.webhook_id == hook["id"]))
        attempts = await db.scalar(select(func.count()).select_from(DeliveryAttemptRow))
    assert row is not None
    assert (row.status, row.attempts, row.locked_by) == ("pending", 0, "another-instance")
    assert row.locked_until == taken_until
    assert attempts == 0


async def test_a_lane_past_its_lease_posts_no_more(apps: Apps, receiver: Receiver) -> None:
    """A lane whose lease ran out during a request (its instance paused past it) may
    have lost the rest of its round to another instance, which sends them itself: the
    lane posts none of them, and leaves them to their holder."""
    api = await apps.start(webhook_timeout_s=NEVER)
    session = await ready_session(api)
    hook = await register(api, session["id"], f"{receiver.base}/hook", events=["message.received"])
    worker = api.services.deliveries
    first_held, second_held = asyncio.Event(), asyncio.Event()

    async def respond(request: Received) -> int:
        count = len(receiver.of("message.received", path="/hook"))
        if count == 1:
            await first_held.wait()  # the rest pile up behind it
        elif count == 2:
            # The second round's first request, out when its lease runs out.
            worker._lanes[hook["id"]].lease_until = utcnow() - timedelta(seconds=1)
            await second_held.wait()
        return 200

    receiver.respond = respond
    taken_until = utcnow() + timedelta(hours=1)
    try:
        await inbound(api, session["id"], "first")
        await receiver.wait_for(lambda _: len(paths_at(receiver)) == 1, what="the first held")
        later = [await inbound(api, session["id"], f"later {i}") for i in range(3)]
        first_held.set()
        await receiver.wait_for(lambda _: len(paths_at(receiver)) == 2, what="the second held")
        assert message_ids(paths_at(receiver)[1:]) == later[:1]
        async with api.services.db() as db, db.begin():
            # Another instance took what the lane has not sent yet.
            await db.execute(
                update(DeliveryRow)
                .where(DeliveryRow.webhook_id == hook["id"], DeliveryRow.status == "pending")
                .where(DeliveryRow.id.not_in(await _sent_ids(db, hook["id"], 2)))
                .values(locked_by="another-instance", locked_until=taken_until)
            )
    finally:
        first_held.set()
        second_held.set()
    await wait_for(_lanes_of(worker), lambda lanes: not lanes, FAILSAFE_S, "the lane to end")
    assert len(paths_at(receiver)) == 2
    async with api.services.db() as db:
        rows = (
            await db.scalars(
                select(DeliveryRow)
                .where(DeliveryRow.webhook_id == hook["id"])
                .order_by(DeliveryRow.event_cursor)
            )
        ).all()
    assert [(r.status, r.locked_by) for r in rows] == [
        ("succeeded", worker._worker_id),
        ("succeeded", worker._worker_id),
        ("pending", "another-instance"),
        ("pending", "another-instance"),
    ]


async def test_a_failed_lane_waits_without_holding_a_slot(
    apps: Apps, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane that failed keeps its webhook for a pause before it is claimed again;
    meanwhile the one slot of WEBHOOK_CONCURRENCY=1 goes to another webhook."""
    monkeypatch.setattr(worker_module, "_LANE_FAILED_PAUSE_S", NEVER)
    api = await apps.start(webhook_timeout_s=NEVER, webhook_concurrency=1)
    session = await ready_session(api)
    paths = Paths(receiver)
    events = ["message.received"]
    broken = await register(api, session["id"], paths.url("/broken"), events=events)
    worker = api.services.deliveries
    write_results = worker._write_results
    failed = asyncio.Event()

    async def failing(succeeded: list[Any], failure: Any, *args: Any) -> None:
        if any(d.webhook_id == broken["id"] for d, _, _ in succeeded):
            failed.set()
            raise RuntimeError("the results write failed")
        await write_results(succeeded, failure, *args)

    monkeypatch.setattr(worker, "_write_results", failing)
    await inbound(api, session["id"], "fails to be recorded")
    await _until(failed, "the broken webhook's record to fail")
    fine = await register(api, session["id"], paths.url("/fine"), events=events)
    sent = await inbound(api, session["id"], "for the other webhook")
    await _delivered(api, session["id"], fine["id"], 1, "a delivery while the other lane waits")
    assert message_ids(paths.at("/fine")) == [sent]
    # The other lane ends after its round (its next claim finds nothing); the paused
    # one still holds its webhook.
    await wait_for(
        lambda: asyncio.sleep(0, list(worker._lanes)),
        lambda lanes: lanes == [broken["id"]],
        FAILSAFE_S,
        "only the paused lane left",
    )


async def _sent_ids(db: Any, webhook_id: str, n: int) -> list[int]:
    """The ids of the webhook's first `n` deliveries, in their order."""
    found = await db.scalars(
        select(DeliveryRow.id)
        .where(DeliveryRow.webhook_id == webhook_id)
        .order_by(DeliveryRow.event_cursor)
        .limit(n)
    )
    return list(found)


def paths_at(receiver: Receiver) -> list[Received]:
    return receiver.of("message.received", path="/hook")


def _lanes_of(worker: Any) -> Callable[[], Any]:
    async def fetch() -> list[str]:
        return list(worker._lanes)

    return fetch
