"""The send queue's leases: a claimed job that is never finished comes back after its lease."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from openwa.db.models import OutboxJobRow
from openwa.kit.clock import utcnow
from openwa.queue import outbox
from tests.fixtures.app import Api, wait_for
from tests.messages.support import (
    get_message,
    parse_time,
    ready_session,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)


async def queued_jobs(api: Api, count: int) -> tuple[str, list[str]]:
    """A ready session with `count` pending messages, the app's own worker stopped."""
    await api.services.sender.stop()
    session = await ready_session(api, "alice")
    ids = [
        (await send_text(api, "alice", "+62 812-3456-7890", f"job {i}"))["id"] for i in range(count)
    ]
    return session["id"], ids


async def test_claimed_jobs_come_back_only_after_the_lease(api: Api) -> None:
    session_id, ids = await queued_jobs(api, 3)
    db = api.services.db
    start = utcnow()

    async with db() as s, s.begin():
        runs = await outbox.claim(s, [session_id], start, 30, "worker-1", 10)
    assert [[job.message_id for job in run] for run in runs] == [ids]

    # Not before the lease runs out: neither the same instant nor just before the end.
    for moment in (start, start + timedelta(seconds=29)):
        async with db() as s, s.begin():
            assert await outbox.claim(s, [session_id], moment, 30, "worker-2", 10) == []

    # After it, another worker takes them again, in the same order.
    later = start + timedelta(seconds=31)
    async with db() as s, s.begin():
        runs = await outbox.claim(s, [session_id], later, 30, "worker-2", 10)
    assert [[job.message_id for job in run] for run in runs] == [ids]
    async with db() as s:
        jobs = (
            await s.execute(select(OutboxJobRow).where(OutboxJobRow.session_id == session_id))
        ).scalars()
        for job in jobs:
            assert job.locked_by == "worker-2"
            assert job.done is False
            assert job.locked_until is not None
            assert job.locked_until > later
    # Nothing was sent meanwhile: the messages are still pending.
    for message_id in ids:
        assert (await get_message(api, "alice", message_id))["status"] == "pending"


async def test_short_lease_expires_in_real_time(api: Api) -> None:
    session_id, ids = await queued_jobs(api, 2)
    db = api.services.db
    claimed_at = utcnow()
    async with db() as s, s.begin():
        runs = await outbox.claim(s, [session_id], claimed_at, 1.0, "worker-1", 10)
    assert [job.message_id for job in runs[0]] == ids

    async def claim_as_worker_2() -> list[list[OutboxJobRow]]:
        async with db() as s, s.begin():
            return await outbox.claim(s, [session_id], utcnow(), 1.0, "worker-2", 10)

    assert await claim_as_worker_2() == []
    # This scenario is about time: worker 2 gets the jobs once the lease has run out.
    runs = await wait_for(claim_as_worker_2, bool, 10, "the lease to run out")
    assert utcnow() - claimed_at >= timedelta(seconds=1.0)
    assert [[job.message_id for job in run] for run in runs] == [ids]


async def test_released_jobs_are_free_at_once_and_keep_their_place(api: Api) -> None:
    session_id, ids = await queued_jobs(api, 3)
    db = api.services.db
    now = utcnow()
    async with db() as s, s.begin():
        runs = await outbox.claim(s, [session_id], now, 30, "worker-1", 10)
        run = runs[0]
    # A stranger cannot release another worker's lease.
    async with db() as s, s.begin():
        await outbox.release(s, run, "worker-2")
    async with db() as s, s.begin():
        assert await outbox.claim(s, [session_id], now, 30, "worker-2", 10) == []
    # The owner gives back all but the head: the head's lease still blocks the session.
    async with db() as s, s.begin():
        await outbox.release(s, run[1:], "worker-1")
    async with db() as s, s.begin():
        assert await outbox.claim(s, [session_id], now, 30, "worker-2", 10) == []
    async with db() as s, s.begin():
        await outbox.release(s, [run[0]], "worker-1")
    async with db() as s, s.begin():
        again = await outbox.claim(s, [session_id], now, 30, "worker-2", 10)
    assert [[job.message_id for job in r] for r in again] == [ids]


async def test_a_leased_job_is_sent_by_the_worker_once_the_lease_ends(api: Api) -> None:
    session_id, ids = await queued_jobs(api, 1)
    db = api.services.db
    claimed_at = utcnow()
    async with db() as s, s.begin():
        await outbox.claim(s, [session_id], claimed_at, 1.0, "crashed-worker", 10)
    # The app's worker comes back; it takes the job only once the dead worker's lease ends.
    await api.services.sender.start()
    await wait_sent(api, "alice", ids[0], timeout=10)
    log = await transmitted(api, "alice")
    assert transmitted_ids(log) == ids
    assert parse_time(log[0]["at"]) >= claimed_at + timedelta(seconds=1)
