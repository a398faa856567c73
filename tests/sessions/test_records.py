"""`SessionRecords` on its own: what a move writes, in the caller's unit of work."""

from __future__ import annotations

import pytest

from openwa.errors import SessionNotFound
from openwa.sessions.records import SessionRecords
from openwa.sessions.status import Status
from tests.fixtures.app import Api


async def _last_cursor(api: Api) -> int:
    async with api.services.db() as db:
        return await api.services.events.last_cursor(db)


async def test_a_refused_move_writes_nothing_and_a_rollback_publishes_nothing(api: Api) -> None:
    session = await api.create_session("records", autoStart=False)
    records = SessionRecords(api.services.events)
    directory = api.services.directory
    cursor = await _last_cursor(api)
    before = directory.get(session["id"])
    assert before is not None

    # created -> ready is not a move of the status machine: refused, nothing logged.
    async with api.services.db() as db, db.begin():
        row = await records.transition(db, session["id"], Status.READY, "skipping ahead")
        assert row.status == Status.CREATED.value
    assert await _last_cursor(api) == cursor
    after = directory.get(session["id"])
    assert after is not None
    assert (after.status, after.status_history) == (before.status, before.status_history)

    # A move that is rolled back leaves neither a row, an event nor a directory copy.
    async def failing() -> None:
        async with api.services.db() as db, db.begin():
            await records.starting(db, session["id"], "started")
            await records.qr_shown(db, session["id"], "2@qr")
            await db.flush()  # the directory notes the row at the flush, keeps it at commit
            raise RuntimeError("the unit of work fails")

    with pytest.raises(RuntimeError):
        await failing()
    assert await _last_cursor(api) == cursor
    kept = directory.get(session["id"])
    assert kept is not None
    assert (kept.status, kept.qr) == ("created", None)
    assert (await api.session(session["id"]))["status"] == "created"

    # The same moves committed: both statuses and the QR event, in order, and the copy.
    async with api.services.db() as db, db.begin():
        await records.starting(db, session["id"], "started")
        await records.qr_shown(db, session["id"], "2@qr")
    async with api.services.db() as db:
        logged = await api.services.events.after(db, cursor, 10, [session["id"]])
    assert [(e.event, e.data.get("status")) for e in logged] == [
        ("session.status", "initializing"),
        ("session.status", "qr_ready"),
        ("session.qr", None),
    ]
    shown = directory.get(session["id"])
    assert shown is not None
    assert (shown.status, shown.qr, shown.should_run) == ("qr_ready", "2@qr", True)


async def test_a_move_of_an_unknown_session_is_not_found(api: Api) -> None:
    records = SessionRecords(api.services.events)
    async with api.services.db() as db, db.begin():
        with pytest.raises(SessionNotFound):
            await records.ready(db, "ses_00000000000000000000000000")
        # Setting fields (no status change) on a session that is gone is a no-op.
        await records.update(db, "ses_00000000000000000000000000", should_run=False)
