"""One bad engine report never sinks the others of its run, and a bad moment of the
database sinks none.

Reports reach the core in runs (up to 200 of a session's reports, one batch of its
runtime's worker). Whatever fails for one of them must stay with that one: the rest of
the run is stored, and the one that failed is kept visible (stored with what could be
made of it) or set aside (`set_aside_reports`), never dropped. A run the database
refuses for a reason of the moment (SQLite busy, a deadlock PostgreSQL broke, a lost
connection) is tried again, for as long as `ENGINE_REPORT_RETRY_S`, before anything is set
aside (a stop or a config change waiting for the session meanwhile goes first); what is set
aside for such a reason is not confirmed stored to the engine, which hands it over
again if it can (the mock network's inbox).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError
from structlog.testing import capture_logs

from openwa.db.models import SessionRow
from openwa.db.models.mock_network import MockInboxRow
from openwa.engines.base import EngineEvent, InboundMedia, MessageReceived
from tests.api.test_health import find, read_metrics
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    data_of,
    get_message,
    one_batch,
    plus,
    ready_pair,
    ready_session,
    received,
    recording,
    send_text,
    stored_and_set_aside,
)


async def test_media_our_storage_refuses_leaves_the_message_and_its_run(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Stored with `mediaError`, its caption shown, the rest of the run stored; a file
    an engine handed over (whatsmeow, the bridge) is not left behind."""
    session = await ready_session(api, "alice")
    storage = api.services.storage
    put = storage.put
    handed_over = tmp_path / "transfer.jpg"
    handed_over.write_bytes(b"abc")

    async def full_disk(key: str, source: Any, mimetype: str) -> None:
        if source in (b"abc", handed_over):  # the two messages' media
            raise OSError(28, "No space left on device")
        await put(key, source, mimetype)

    monkeypatch.setattr(storage, "put", full_disk)
    image = received(
        2,
        id="media-fails",
        type="image",
        content={"caption": "the caption"},
        media=InboundMedia(mimetype="image/jpeg", size=3, data=b"abc"),
    )
    from_a_file = received(
        4,
        id="file-fails",
        type="image",
        content={},
        media=InboundMedia(mimetype="image/jpeg", size=3, path=handed_over),
    )
    reports: list[EngineEvent] = [received(1), image, received(3), from_a_file]
    ids = {r.id for r in reports if isinstance(r, MessageReceived)}
    async with recording(api) as events:
        await one_batch(api, session["id"], reports)
        _, aside = await wait_for(
            lambda: stored_and_set_aside(api, session["id"]),
            lambda found: found[0] >= ids,
            what="the run stored",
        )
        announced = await events.one(
            lambda e: e.event == "message.received" and e.data["id"] == "media-fails"
        )
    assert aside == []
    shown = await get_message(api, session["id"], "media-fails")
    error = "not stored: our media storage failed (OSError)"
    assert (shown["caption"], shown.get("media"), shown["mediaError"]) == (
        "the caption",
        None,
        error,
    )
    assert announced.data["mediaError"] == error
    assert announced.data["caption"] == "the caption"
    assert (await get_message(api, session["id"], "file-fails"))["mediaError"] == error
    assert not handed_over.exists()


async def test_an_inbound_report_that_cannot_be_made_ready_is_set_aside_alone(
    api: Api,
) -> None:
    """Content the message model refuses (an engine's `location` that is no object)
    fails as the message is made ready, before the run: that one is set aside, the
    rest of the run is stored."""
    session = await ready_session(api, "alice")
    bad = received(2, content={"text": "bad", "location": "not an object"})
    reports: list[EngineEvent] = [received(1), bad, received(3)]
    await one_batch(api, session["id"], reports)

    good = {received(1).id, received(3).id}
    stored, aside = await wait_for(
        lambda: stored_and_set_aside(api, session["id"]),
        lambda found: found[0] >= good and len(found[1]) == 1,
        what="the run stored, the bad report set aside",
    )
    assert bad.id not in stored
    assert [(r.kind, r.report["id"]) for r in aside] == [("MessageReceived", bad.id)]
    # Not only in a table nobody reads: an alert can say that something was kept back.
    assert find(await read_metrics(api), "openwa_engine_reports_set_aside") == [1.0]


def of_the_moment(database_kind: str, tmp_path: Path) -> OperationalError:
    """What the database says in a bad moment: SQLite busy past its timeout (a real
    one: a second writer on a file another holds), PostgreSQL breaking a deadlock."""
    if database_kind == "postgres":
        deadlock = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return OperationalError("COMMIT", {}, deadlock)
    engine = create_engine(f"sqlite:///{tmp_path / 'busy.db'}", connect_args={"timeout": 0})
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError) as refused:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            holder.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()
    return refused.value


async def in_the_inbox(api: Api, message_id: str) -> bool | None:
    """Whether the mock network still waits to hand the message over (None: never
    put in an inbox)."""
    async with api.services.db() as db:
        delivered = await db.execute(
            select(MockInboxRow.delivered_at).where(MockInboxRow.message_id == message_id)
        )
        found = delivered.one_or_none()
    return None if found is None else found[0] is None


def failing_runs(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, session_id: str
) -> dict[str, int]:
    """Runs of the session's inbound messages fail with `error` while `left` > 0."""
    applier = api.services.reports
    apply_run = applier._apply_run
    state = {"left": 0, "failed": 0}

    async def flaky(session: SessionRow, reports: list[EngineEvent], *args: Any) -> Any:
        inbound = any(isinstance(r, MessageReceived) for r in reports)
        if session.id == session_id and inbound and state["left"] > 0:
            state["left"] -= 1
            state["failed"] += 1
            raise error
        return await apply_run(session, reports, *args)

    monkeypatch.setattr(applier, "_apply_run", flaky)
    return state


async def test_a_run_that_meets_a_bad_moment_is_tried_again(
    api: Api, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    session = await ready_session(api, "alice")
    state = failing_runs(api, monkeypatch, of_the_moment(database_kind, tmp_path), session["id"])
    state["left"] = 2  # the run, then (before) the same report alone
    with capture_logs() as logs:
        answer = await api.request(
            "POST",
            f"/api/sessions/{session['id']}/mock/inbound",
            json={"from": "+4915112345678", "text": "hello"},
        )
        message_id = data_of(answer, 202)["id"]
        shown = await wait_for(
            lambda: api.request("GET", f"/api/sessions/{session['id']}/messages/{message_id}"),
            lambda r: r.status_code != 404,
            what="the message stored",
        )
    assert data_of(shown)["text"] == "hello"
    assert state["failed"] == 2
    _, aside = await stored_and_set_aside(api, session["id"])
    assert aside == []
    retried = [e for e in logs if e["event"] == "engine_reports_retried"]
    assert [e["attempt"] for e in retried] == [1, 2]
    said = "sqlstate" if database_kind == "postgres" else "sqlite_code"
    assert {e[said] for e in retried} == {"40P01" if database_kind == "postgres" else "SQLITE_BUSY"}


def retried(logs: list[dict[str, Any]], session_id: str) -> list[int]:
    """The attempts logged of the session's runs tried again."""
    return [
        e["attempt"]
        for e in logs
        if e["event"] == "engine_reports_retried" and e["session_id"] == session_id
    ]


async def test_a_run_waits_out_a_database_away_for_longer_than_a_few_tries(
    api: Api, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """A restart of the database takes longer than a few quick tries: the run waits it
    out and is written without the engine handing anything over again (whatsmeow and
    whatsapp-web.js do not), nothing set aside."""
    alice, bob = await ready_pair(api)
    state = failing_runs(api, monkeypatch, of_the_moment(database_kind, tmp_path), bob["id"])
    state["left"] = 7
    with capture_logs() as logs:
        sent = await send_text(api, alice["id"], plus(bob), "through a restart")
        shown = await wait_for(
            lambda: api.request("GET", f"/api/sessions/{bob['id']}/messages/{sent['id']}"),
            lambda r: r.status_code == 200,
            timeout=30,  # about 7 s of pauses
            what="the message stored",
        )
    assert data_of(shown)["text"] == "through a restart"
    tries = retried(logs, bob["id"])
    # More than the 5 retries a run once had. (Not always 7: a try group-committed
    # with Alice's run of acks fails the group, whose runs are then tried alone, which
    # calls Bob's twice in that one try.)
    assert tries == list(range(1, 1 + len(tries)))
    assert len(tries) >= 6
    _, aside = await stored_and_set_aside(api, bob["id"])
    assert aside == []


async def test_a_run_failing_past_its_patience_is_handed_over_again(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """The patience (`ENGINE_REPORT_RETRY_S`) used up, the message is set aside (logged),
    but not confirmed stored: the mock's inbox hands it over again on the next
    connection, and it is stored then, once."""
    async with app_factory.running(engine_report_retry_s=1.0) as api:
        alice, bob = await ready_pair(api)
        error = of_the_moment(database_kind, tmp_path)
        state = failing_runs(api, monkeypatch, error, bob["id"])
        state["left"] = 1000
        with capture_logs() as logs:
            sent = await send_text(api, alice["id"], plus(bob), "through a bad spell")
            _, aside = await wait_for(
                lambda: stored_and_set_aside(api, bob["id"]),
                lambda found: len(found[1]) == 1,
                what="the report set aside",
            )
        assert (aside[0].kind, aside[0].report["id"]) == ("MessageReceived", sent["id"])
        state["left"] = 0
        tries = retried(logs, bob["id"])
        assert tries == list(range(1, 1 + len(tries)))
        assert 1 <= len(tries) <= 4  # 0.1 s, doubling (±20 %), within 1 s
        await stored_when_handed_over_again(api, bob["id"], sent, "mock/disconnect")


async def stored_when_handed_over_again(
    api: Api, session_id: str, sent: dict[str, Any], action: str
) -> None:
    """The message, not stored nor confirmed to the mock's inbox, is handed over again
    by the connection that `action` (a reconnect, a start) makes, and stored then."""
    url = f"/api/sessions/{session_id}"
    assert (await api.request("GET", f"{url}/messages/{sent['id']}")).status_code == 404
    assert await in_the_inbox(api, sent["id"]) is True  # not confirmed stored
    assert (await api.request("POST", f"{url}/{action}")).status_code < 300
    await api.wait_status(session_id, "ready")
    shown = await wait_for(
        lambda: api.request("GET", f"{url}/messages/{sent['id']}"),
        lambda r: r.status_code == 200,
        what="the message handed over again and stored",
    )
    assert data_of(shown)["text"] == sent["text"]


async def tried_again(state: dict[str, int]) -> None:
    """Until the failing run was tried once more after its first failure."""
    await wait_for(
        lambda: asyncio.sleep(0, state["failed"]),
        lambda failed: failed >= 2,
        what="the run tried again",
    )


async def waiting_out_the_database(
    api: Api, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Bob's runs fail for a reason of the moment until told otherwise; a message from
    Alice is in a run that waits it out (tried again at least once). Returns Bob, the
    message and the failing state."""
    alice, bob = await ready_pair(api)
    state = failing_runs(api, monkeypatch, of_the_moment(database_kind, tmp_path), bob["id"])
    state["left"] = 1_000_000
    sent = await send_text(api, alice["id"], plus(bob), "while the database is away")
    await tried_again(state)
    return bob, sent, state


async def test_a_stop_does_not_wait_for_a_run_waiting_out_the_database(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """The run lets go of the session's lock: the stop's drain tries it for its own
    bound (`SHUTDOWN_TIMEOUT_S`) instead of the stop waiting out the run's patience.
    Not written, the message is not confirmed stored: the next connection hands it over
    again."""
    async with app_factory.running(shutdown_timeout_s=1) as api:
        bob, sent, state = await waiting_out_the_database(api, monkeypatch, database_kind, tmp_path)
        url = f"/api/sessions/{bob['id']}"
        with capture_logs() as logs:
            async with asyncio.timeout(60):  # the run's patience is 300 s
                stopped = await api.request("POST", f"{url}/stop")
        assert data_of(stopped)["status"] == "stopped"
        [left] = [e for e in logs if e["event"] == "engine_reports_not_written"]
        assert left["left"] == 1
        state["left"] = 0
        await stored_when_handed_over_again(api, bob["id"], sent, "start")


async def test_a_run_put_off_for_a_config_change_is_written_after_it(
    api: Api, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """A change of the session's config waits for its lock: the run waiting out the
    database lets go of it, and goes on once the change is made, the connection kept,
    its patience not started again (the retries logged go on counting)."""
    with capture_logs() as logs:
        bob, sent, state = await waiting_out_the_database(api, monkeypatch, database_kind, tmp_path)
        url = f"/api/sessions/{bob['id']}"
        async with asyncio.timeout(60):  # the run's patience is 300 s
            changed = await api.request("PATCH", url, json={"config": {"metadata": {"a": "b"}}})
        assert data_of(changed)["config"]["metadata"] == {"a": "b"}
        before = len(retried(logs, bob["id"]))
        await wait_for(
            lambda: asyncio.sleep(0, len(retried(logs, bob["id"]))),
            lambda count: count > before,
            what="the run tried again after the change",
        )
        state["left"] = 0
        shown = await wait_for(
            lambda: api.request("GET", f"{url}/messages/{sent['id']}"),
            lambda r: r.status_code == 200,
            what="the message stored",
        )
    assert data_of(shown)["text"] == "while the database is away"
    tries = retried(logs, bob["id"])
    assert tries == list(range(1, 1 + len(tries)))
    # Confirmed (just after the commit), so not handed over again.
    await wait_for(
        lambda: in_the_inbox(api, sent["id"]), lambda waits: waits is False, what="confirmed"
    )
    _, aside = await stored_and_set_aside(api, bob["id"])
    assert aside == []


async def test_a_put_off_run_keeps_the_media_file_its_engine_handed_over(
    api: Api, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """whatsmeow and the bridge hand inbound media over as a file, which storing the
    message moves into our storage. A run put off is made ready again: the file must
    still be there then, and be gone once the message is stored."""
    session = await ready_session(api, "alice")
    state = failing_runs(api, monkeypatch, of_the_moment(database_kind, tmp_path), session["id"])
    state["left"] = 1_000_000
    handed_over = tmp_path / "transfer.jpg"
    handed_over.write_bytes(b"\xff\xd8\xff image")
    image = received(
        7, type="image", content={}, media=InboundMedia("image/jpeg", 10, path=handed_over)
    )
    await one_batch(api, session["id"], [image])
    await tried_again(state)
    url = f"/api/sessions/{session['id']}"
    changed = await api.request("PATCH", url, json={"config": {"metadata": {"a": "b"}}})
    assert changed.status_code == 200
    assert handed_over.exists()
    state["left"] = 0
    shown = await wait_for(
        lambda: api.request("GET", f"{url}/messages/{image.id}"),
        lambda r: r.status_code == 200,
        what="the message stored",
    )
    assert data_of(shown).get("mediaError") is None
    assert data_of(shown)["media"]["mimetype"] == "image/jpeg"
    assert not handed_over.exists()


async def test_a_run_refused_for_a_reason_of_its_own_is_not_tried_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clash (or a value refused) would fail again: set aside at once, and confirmed
    stored (the engine would only hand over the same report)."""
    alice, bob = await ready_pair(api)
    clash = IntegrityError("INSERT", {}, Exception("duplicate key"))
    state = failing_runs(api, monkeypatch, clash, bob["id"])
    state["left"] = 1000
    sent = await send_text(api, alice["id"], plus(bob), "refused")
    _, aside = await wait_for(
        lambda: stored_and_set_aside(api, bob["id"]),
        lambda found: len(found[1]) == 1,
        what="the report set aside",
    )
    assert state["failed"] == 1
    assert aside[0].report["id"] == sent["id"]
    await wait_for(
        lambda: in_the_inbox(api, sent["id"]),
        lambda waiting: waiting is False,
        what="the inbox let go of it",
    )


async def test_a_run_past_its_patience_is_set_aside_whole(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, database_kind: str, tmp_path: Path
) -> None:
    """The database still out of reach past the patience: each report alone would only
    wait out the same failure again (with a silent host, each a TCP bound), so the run
    is set aside as it is, without a try per report. (A conflict may spare a report
    alone: `test_a_run_failing_past_its_patience_is_handed_over_again`'s kind.)"""
    async with app_factory.running(engine_report_retry_s=0.5) as api:
        session = await ready_session(api, "alice")
        away = ConnectionRefusedError(111, "Connect call failed")
        state = failing_runs(api, monkeypatch, away, session["id"])
        state["left"] = 1000
        reports: list[EngineEvent] = [received(n) for n in (1, 2, 3)]
        with capture_logs() as logs:
            await one_batch(api, session["id"], reports)
            _, aside = await wait_for(
                lambda: stored_and_set_aside(api, session["id"]),
                lambda found: len(found[1]) == 3,
                what="the run set aside",
            )
        assert sorted(r.report["id"] for r in aside) == sorted(r.id for r in reports)
        # The run's first try and its retries, and no try of a report alone.
        assert state["failed"] == 1 + len(retried(logs, session["id"]))
