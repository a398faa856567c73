"""A session that stops writes the reports its engine handed over first.

For whatsmeow, Baileys and whatsapp-web.js a report in a session's queue is the only
copy of what it says: the engine acknowledged the message to WhatsApp as it took it
in. So a stop, a restart, a logout, the server's graceful shutdown and an end reported
by the engine (logged out, failed) disconnect the client and then write what is queued,
the batch the worker had taken included (`SessionRuntime._drain`), before they go on.

The mock's `mock/inbound` plays such an engine here: the message is not in any inbox,
and the call is answered 202 once its report is queued. The writer is stalled for real:
the session's lock, which every batch takes and a stop holds, is held by the test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select
from structlog.testing import capture_logs

from openwa.db.models import MessageRow
from openwa.engines.base import EngineEvent, LoggedOut
from openwa.sessions.runtime import SessionRuntime
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import ready_session

SENDER = "+4915112345678"


def inbound(api: Api, session_id: str, text: str) -> asyncio.Task[httpx.Response]:
    url = f"/api/sessions/{session_id}/mock/inbound"
    return asyncio.create_task(api.request("POST", url, json={"from": SENDER, "text": text}))


async def accepted(calls: list[asyncio.Task[httpx.Response]]) -> list[str]:
    """The ids of the messages the calls handed over (each answered 202)."""
    answers = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert [a.status_code for a in answers] == [202] * len(calls), [a.text for a in answers]
    return [a.json()["data"]["id"] for a in answers]


async def stored(api: Api, session_id: str) -> list[str]:
    async with api.services.db() as db:
        rows = await db.execute(
            select(MessageRow.id).where(
                MessageRow.session_id == session_id, MessageRow.from_me.is_(False)
            )
        )
        return list(rows.scalars())


async def taken_by_the_worker(runtime: SessionRuntime) -> None:
    """The worker took what was queued and waits for the session's lock."""
    await wait_for(lambda: asyncio.sleep(0, runtime.reports_queued), lambda n: n == 0)


async def waiting_for(lock: asyncio.Lock, count: int) -> None:
    await wait_for(
        lambda: asyncio.sleep(0, len(getattr(lock, "_waiters", None) or ())),
        lambda n: n == count,
        what=f"{count} waiting for the session's lock",
    )


async def test_a_stop_writes_the_batch_taken_and_what_is_queued(api: Api) -> None:
    session = await ready_session(api, "alice")
    runtime = api.services.runtime
    async with runtime.lock(session["id"]):  # held as a stop holds it
        first = await accepted([inbound(api, session["id"], "taken")])
        await taken_by_the_worker(runtime)
        rest = await accepted([inbound(api, session["id"], f"queued {i}") for i in range(3)])
        assert runtime.reports_queued == 3
        await runtime.stop(session["id"], "stopped by API")  # as SessionService.stop does
    assert sorted(await stored(api, session["id"])) == sorted(first + rest)
    assert (await api.session(session["id"]))["status"] == "stopped"


async def test_a_restart_through_the_api_loses_nothing_queued(api: Api) -> None:
    """The worker applies its batch, takes the next and waits for the lock the restart
    holds: that batch is written by the restart, before the session starts again."""
    session = await ready_session(api, "alice")
    runtime = api.services.runtime
    lock = runtime.lock(session["id"])
    async with lock:
        first = await accepted([inbound(api, session["id"], "first")])
        await taken_by_the_worker(runtime)
        rest = await accepted([inbound(api, session["id"], f"next {i}") for i in range(4)])
        restart = asyncio.create_task(api.request("POST", f"/api/sessions/{session['id']}/restart"))
        await waiting_for(lock, 2)  # the worker, then the restart
    assert (await restart).status_code == 200, (await restart).text
    assert sorted(await stored(api, session["id"])) == sorted(first + rest)
    await api.wait_status(session["id"], "ready")


async def test_a_graceful_shutdown_writes_what_its_sessions_queued(
    app_factory: AppFactory,
) -> None:
    """A deploy (SIGTERM) during a burst: every report queued is stored, as the next
    start shows."""
    api, manager = await app_factory.start()
    session = await ready_session(api, "alice")
    runtime = api.services.runtime
    lock = runtime.lock(session["id"])
    async with lock:
        first = await accepted([inbound(api, session["id"], "first")])
        await taken_by_the_worker(runtime)
        rest = await accepted([inbound(api, session["id"], f"burst {i}") for i in range(49)])
        stopping = asyncio.create_task(app_factory.stop(api, manager))
        await waiting_for(lock, 2)  # the worker, then the shutdown's stop
    await asyncio.wait_for(stopping, 30)
    async with app_factory.running() as again:
        assert sorted(await stored(again, session["id"])) == sorted(first + rest)


async def test_an_end_the_engine_reports_writes_what_came_after_it(api: Api) -> None:
    """Logged out on the phone: the session ends, and what its engine had reported
    behind that is written too."""
    session = await ready_session(api, "alice")
    runtime = api.services.runtime
    running = runtime._running[session["id"]]
    async with runtime.lock(session["id"]):
        first = await accepted([inbound(api, session["id"], "before")])
        await taken_by_the_worker(runtime)
        logged_out: EngineEvent = LoggedOut("logged out on the phone")
        running.events.put_nowait(logged_out)
        after = await accepted([inbound(api, session["id"], f"after {i}") for i in range(2)])
    await api.wait_status(session["id"], "failed")
    assert sorted(await stored(api, session["id"])) == sorted(first + after)


async def test_a_stuck_database_holds_a_stop_no_longer_than_its_bound(
    app_factory: AppFactory,
) -> None:
    """What is left when the bound (SHUTDOWN_TIMEOUT_S) is hit is logged with its
    count, and the stop goes on."""
    async with app_factory.running(shutdown_timeout_s=1) as api:
        session = await ready_session(api, "alice")
        runtime = api.services.runtime
        stuck = asyncio.Event()

        async def never(_row: Any, _reports: list[EngineEvent], **_: Any) -> list[str]:
            await stuck.wait()
            return []

        async with runtime.lock(session["id"]):
            await accepted([inbound(api, session["id"], f"stuck {i}") for i in range(3)])
            runtime.set_message_handler(never)
            with capture_logs() as logs:
                await asyncio.wait_for(runtime.stop(session["id"], "stopped by API"), 10)
        told = [
            (e["left"], e["bound_s"]) for e in logs if e["event"] == "engine_reports_not_written"
        ]
        assert told == [(3, 1)], logs
        assert (await api.session(session["id"]))["status"] == "stopped"
        async with api.services.db() as db:
            count = await db.scalar(select(func.count()).select_from(MessageRow))
        assert count == 0
