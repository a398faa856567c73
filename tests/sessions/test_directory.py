"""What is kept in memory of a session goes when the session is deleted, on the instance
that deleted it and on the others (which learn it from their directory's refresh): a
lock and a set of waiting edits per session ever seen stayed for the process's life."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from openwa.kit.clock import utcnow
from openwa.sessions.directory import SessionDirectory
from tests.fixtures.app import Api, wait_for


async def test_a_session_deleted_leaves_nothing_of_it_in_memory(api: Api) -> None:
    doomed = await api.create_session("doomed")
    await api.wait_status("doomed", "ready")
    response = await api.request(
        "POST",
        f"/api/sessions/{doomed['id']}/mock/inbound",
        json={"from": "+1 555 0100 200", "text": "kept per session"},
    )
    assert response.status_code in (200, 201, 202), response.text
    runtime, reports = api.services.runtime, api.services.reports
    assert doomed["id"] in runtime._locks
    waiting = reports._pending_edits._waiting  # loaded when the inbound message is stored

    async def loaded() -> bool:
        return doomed["id"] in waiting

    await wait_for(loaded, bool, 15, "the message to be stored")
    response = await api.request("DELETE", f"/api/sessions/{doomed['id']}")
    assert response.status_code == 200, response.text
    assert doomed["id"] not in runtime._locks
    assert doomed["id"] not in reports._pending_edits._waiting


async def test_a_session_deleted_by_another_instance_is_told_to_the_listeners(api: Api) -> None:
    """Here the other instance is the test: it deletes the row itself, and a directory
    of its own (as another instance holds one) finds it gone at its next refresh."""
    gone = await api.create_session("gone", autoStart=False)
    async with api.services.db() as db, db.begin():
        # Older than the refresh's window for rows just written.
        await db.execute(
            text("UPDATE sessions SET updated_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(minutes=1), "id": gone["id"]},
        )
    directory = SessionDirectory()
    dropped: list[str] = []
    directory.add_drop_listener(dropped.append)
    await directory.load(api.services.db)
    assert directory.get(gone["id"]) is not None
    async with api.services.db() as db, db.begin():
        await db.execute(text("DELETE FROM sessions WHERE id = :id"), {"id": gone["id"]})
    await directory.refresh(api.services.db)
    assert directory.get(gone["id"]) is None
    assert dropped == [gone["id"]]
