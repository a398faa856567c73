"""Group commit: one failing unit sinks only itself, on the real databases.

The units share a transaction; when one fails, the batch is rolled back and each unit
runs again alone, so the others commit and only the failing one gets its error. Tested
on the bare mechanism (a unique clash), on accepted sends (two requests racing one
`Idempotency-Key` among others) and on engine reports (a report PostgreSQL refuses is
set aside, the rest of its run is stored).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.group_commit import GroupCommit
from openwa.db.models import CounterRow
from openwa.engines.base import MessageReceived
from tests.fixtures.app import Api
from tests.messages.support import (
    data_of,
    plus,
    post_text,
    ready_pair,
    ready_session,
    stored_and_set_aside,
)


async def test_a_clashing_unit_fails_alone(api: Api) -> None:
    commit = GroupCommit(api.services.db, name="test")

    def insert(name: str) -> object:
        async def work(db: AsyncSession) -> str:
            db.add(CounterRow(name=name, value=1))
            await db.flush()
            return name

        return work

    names = [f"gc-{i}" for i in range(8)]
    # The seventh clashes with the first: both are in the same batch.
    units = [insert(name) for name in names] + [insert(names[0])]
    results = await asyncio.gather(*(commit.run(u) for u in units), return_exceptions=True)  # type: ignore[arg-type]
    await commit.close()
    assert results[:8] == names
    assert isinstance(results[8], IntegrityError)
    async with api.services.db() as db:
        stored = set(
            (await db.execute(select(CounterRow.name).where(CounterRow.name.like("gc-%"))))
            .scalars()
            .all()
        )
    assert stored == set(names)
    assert commit.committed == 8


async def test_racing_idempotency_keys_in_one_batch(api: Api) -> None:
    a, b = await ready_pair(api)
    later = "2099-01-01T00:00:00+00:00"
    same = [
        post_text(api, a["id"], plus(b), "once", idempotency_key="same", sendAt=later)
        for _ in range(2)
    ]
    others = [post_text(api, a["id"], plus(b), f"other {i}", sendAt=later) for i in range(10)]
    responses = await asyncio.gather(*same, *others)
    bodies = [data_of(r, 202) for r in responses]
    assert bodies[0]["id"] == bodies[1]["id"]  # one message, answered twice
    assert len({body["id"] for body in bodies}) == 11


async def test_a_report_the_database_refuses_is_set_aside(api: Api, database_kind: str) -> None:
    if database_kind != "postgres":
        pytest.skip("SQLite stores an over-long value; PostgreSQL refuses it")
    session = await ready_session(api, "carol")
    row = api.services.directory.get(session["id"])
    assert row is not None
    now = datetime.now(UTC)

    def received(n: int, type_: str) -> MessageReceived:
        chat_id = f"49151000000{n:02d}@s.whatsapp.net"
        return MessageReceived(
            id=f"3EB0{n:020X}",
            chat_id=chat_id,
            sender=chat_id,
            type=type_,
            content={"text": f"message {n}"},
            timestamp=now,
        )

    # PostgreSQL refuses a value longer than its column (here the message type; push
    # names and reasons are cleaned before storage, tests/api/test_bounds.py): that
    # report alone must fail, the others of its run are stored.
    reports = [received(1, "text"), received(2, "x" * 40), received(3, "text")]
    await api.services.reports.on_engine_events(row, list(reports))
    stored, aside = await stored_and_set_aside(api, row.id)
    assert reports[0].id in stored
    assert reports[2].id in stored
    assert reports[1].id not in stored
    assert [(r.session_id, r.kind, r.report["id"]) for r in aside] == [
        (row.id, "MessageReceived", reports[1].id)
    ]
