"""Memory stays bounded when writing falls behind: a session's engine is asked to hold
back once `ENGINE_REPORT_QUEUE_MAX` of its reports wait to be written, and nothing that
was held back is lost (`engines.flow`).

The writer is stalled for real: the session's lock, which every batch of reports takes
(as a start, a stop or a config change of the session holds it), is held by the test.
The mock engine holds back by making whoever hands it a report wait, here the
`mock/inbound` calls; what other sessions send it waits in its inbox.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from openwa.db.models import EventRow, MessageRow
from openwa.engines.flow import HoldTeller, ReportFlow
from tests.api.test_health import find, metrics
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import plus, ready_session, send_text, wait_sent

BOUND = 5
CALLS = 30
SENDER = "+4915112345678"


async def test_a_stalled_writer_holds_the_engine_back_and_loses_nothing(
    app_factory: AppFactory,
) -> None:
    async with app_factory.running(engine_report_queue_max=BOUND) as api:
        session = await ready_session(api, "alice")
        runtime = api.services.runtime
        url = f"/api/sessions/{session['id']}/mock/inbound"

        def inbound(i: int) -> asyncio.Task[httpx.Response]:
            body = {"from": SENDER, "text": f"held {i}"}
            return asyncio.create_task(api.request("POST", url, json=body))

        async with runtime.lock(session["id"]):
            calls = [inbound(i) for i in range(CALLS)]
            # The writer takes what is queued into its batch, then waits for the lock;
            # the queue fills to its bound, which closes the flow; the rest wait.
            await wait_for(
                lambda: asyncio.sleep(0, runtime.held_back), lambda held: held == 1, what="held"
            )
            # Those whose reports were taken are answered (an answer may wait for the
            # audit log's write); however long that takes, no more than a bound in the
            # writer's batch and a bound in the queue are ever taken: the rest wait.
            await wait_for(
                lambda: asyncio.sleep(0, sum(call.done() for call in calls)),
                lambda done: done >= BOUND,
                what="the calls whose reports were taken",
            )
            assert runtime.reports_queued <= BOUND
            for _ in range(50):
                await asyncio.sleep(0)
            assert sum(call.done() for call in calls) < 2 * BOUND
            assert runtime.held_back == 1
            assert find(await metrics(api), "openwa_engine_sessions_held_back") == [1.0]
            # A held session sends nothing: its acks would only queue behind the rest.
            text = {"chatId": SENDER, "text": "waits for the session to catch up"}
            sending = await api.request(
                "POST", f"/api/sessions/{session['id']}/messages/text", json=text
            )
            assert sending.status_code == 202, sending.text
            assert await api.services.sender.run_once() == 0
            sent = sending.json()["data"]["id"]
            held = await api.request("GET", f"/api/sessions/{session['id']}/messages/{sent}")
            assert held.json()["data"]["status"] == "pending"
        answers = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert [a.status_code for a in answers] == [202] * CALLS

        async def stored() -> tuple[int, int]:
            async with api.services.db() as db:
                messages = await db.scalar(
                    select(func.count())
                    .select_from(MessageRow)
                    .where(MessageRow.session_id == session["id"], MessageRow.from_me.is_(False))
                )
                events = await db.scalar(
                    select(func.count())
                    .select_from(EventRow)
                    .where(
                        EventRow.session_id == session["id"], EventRow.event == "message.received"
                    )
                )
            return int(messages or 0), int(events or 0)

        assert await wait_for(stored, lambda n: n == (CALLS, CALLS)) == (CALLS, CALLS)
        assert runtime.reports_queued == 0
        # Opened once the last batch's writing has finished (after its commit).
        await wait_for(lambda: asyncio.sleep(0, runtime.held_back), lambda held: held == 0)
        assert find(await metrics(api), "openwa_engine_sessions_held_back") == [0.0]
        await wait_for(
            lambda: api.request("GET", f"/api/sessions/{session['id']}/messages/{sent}"),
            lambda answer: answer.json()["data"]["status"] != "pending",
            what="the held send",
        )


async def test_waiters_woken_together_keep_the_bound() -> None:
    """Opened, the flow lets through only as many as fit before it closes again."""
    flow = ReportFlow()
    queue: list[int] = []
    flow.set_open(False)

    async def hand_over(i: int) -> None:
        await flow.wait_open()
        queue.append(i)
        if len(queue) >= 3:
            flow.set_open(False)

    waiters = [asyncio.create_task(hand_over(i)) for i in range(10)]
    await asyncio.sleep(0)
    told: list[bool] = []
    flow.listen(told.append)
    flow.set_open(True)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(queue) == 3
    assert not flow.is_open
    assert told == [True, False]
    queue.clear()
    flow.set_open(True)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(queue) == 3
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_the_engine_process_is_told_the_last_word_once_and_again_after_a_connect() -> None:
    """`HoldTeller`: one word in flight at a time, the flow's latest state told last; a
    word that does not get through is said again; a connect re-tells a closed flow,
    since a new connection reads freely."""
    flow = ReportFlow()
    told: list[bool] = []
    answer = asyncio.Event()
    refusals = 0

    async def tell(held: bool) -> None:
        nonlocal refusals
        await answer.wait()
        if refusals:
            refusals -= 1
            raise ConnectionError("the bridge did not answer")
        told.append(held)

    teller = HoldTeller(flow, tell, "ses_1")
    flow.set_open(False)
    flow.set_open(True)
    flow.set_open(False)  # three changes while the first word waits for its answer
    answer.set()
    await wait_for(lambda: asyncio.sleep(0, list(told)), lambda words: words == [True])
    teller.connected()
    await wait_for(lambda: asyncio.sleep(0, list(told)), lambda words: words == [True, True])
    refusals = 1
    flow.set_open(True)  # "go on" is refused once, then said again
    await wait_for(lambda: asyncio.sleep(0, list(told)), lambda words: words == [True, True, False])
    teller.connected()  # open: nothing to tell
    await asyncio.sleep(0)
    assert told == [True, True, False]


async def test_a_held_engine_is_not_told_to_go_on_when_its_session_goes() -> None:
    """A stop releases the flow's waiters, but the engine hears no "go on": it is
    disconnected next, and reading on would have it take from WhatsApp (and acknowledge)
    what it held back, into a queue being closed, when its writes are already slow."""
    flow = ReportFlow()
    told: list[bool] = []

    async def tell(held: bool) -> None:
        told.append(held)

    HoldTeller(flow, tell, "ses_1")
    flow.set_open(False)
    await wait_for(lambda: asyncio.sleep(0, list(told)), lambda words: words == [True])
    flow.release()
    await asyncio.wait_for(flow.wait_open(), 1)  # nobody waits on it any more
    for _ in range(5):
        await asyncio.sleep(0)
    assert told == [True]


def inbound_calls(api: Api, session_id: str, count: int) -> list[asyncio.Task[httpx.Response]]:
    url = f"/api/sessions/{session_id}/mock/inbound"
    return [
        asyncio.create_task(api.request("POST", url, json={"from": SENDER, "text": f"in {i}"}))
        for i in range(count)
    ]


async def held(api: Api) -> None:
    runtime = api.services.runtime
    await wait_for(lambda: asyncio.sleep(0, runtime.held_back), lambda n: n == 1, what="held")


async def test_a_session_stopped_while_held_leaves_nobody_waiting(app_factory: AppFactory) -> None:
    """The flow opens for good, and every caller that waited is answered 409; what was
    queued before (answered 202) is written by the stop, as any report queued when a
    session stops (tests/sessions/test_queued_reports.py)."""
    async with app_factory.running(engine_report_queue_max=BOUND) as api:
        session = await ready_session(api, "alice")
        runtime = api.services.runtime
        async with runtime.lock(session["id"]):
            calls = inbound_calls(api, session["id"], CALLS)
            await held(api)
            await runtime.stop(session["id"], "stopped while held")  # as a stop does
        answers = await asyncio.wait_for(asyncio.gather(*calls), 30)
        codes = [a.status_code for a in answers]
        assert set(codes) <= {202, 409}
        # Fewer than two bounds were taken before the stop; those that waited are told
        # the session stopped, not answered 202 for a message with no session left.
        assert codes.count(409) > CALLS - 2 * BOUND
        assert runtime.held_back == 0
        accepted = {a.json()["data"]["id"] for a in answers if a.status_code == 202}
        async with api.services.db() as db:
            rows = await db.execute(
                select(MessageRow.id).where(MessageRow.session_id == session["id"])
            )
            assert set(rows.scalars()) == accepted


async def test_a_held_recipient_holds_up_no_sender_and_gets_its_messages_after(
    app_factory: AppFactory,
) -> None:
    """A mock session held back takes nothing live: what is sent to it waits in its
    inbox and comes once it goes on, so its senders, and everyone else's sends, go on."""
    async with app_factory.running(engine_report_queue_max=BOUND) as api:
        alice, bob, carol = [await ready_session(api, name) for name in ("alice", "bob", "carol")]
        runtime = api.services.runtime
        async with runtime.lock(bob["id"]):
            calls = inbound_calls(api, bob["id"], CALLS)
            await held(api)
            to_bob = await send_text(api, alice["id"], plus(bob), "while bob is held")
            elsewhere = await send_text(api, carol["id"], SENDER, "unrelated")
            # sent, or further on already (carol's, acked at once, may be read by now)
            await wait_sent(api, alice["id"], to_bob["id"], 20)
            await wait_sent(api, carol["id"], elsewhere["id"], 20)
        await asyncio.wait_for(asyncio.gather(*calls), 30)

        async def bobs_texts() -> list[str]:
            response = await api.request(
                "GET", "/api/events", params={"sessions": bob["id"], "events": "message.received"}
            )
            return [e["data"].get("text") for e in response.json()["data"]["events"]]

        texts = await wait_for(
            bobs_texts, lambda found: "while bob is held" in found, 20, "bob's message"
        )
        assert texts.count("while bob is held") == 1
        assert runtime.held_back == 0
