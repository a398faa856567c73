"""The life of a session over HTTP: start, stop, restart, logout, delete, QR, pairing,
the mock controls, and MAX_SESSIONS."""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import datetime
from typing import Any

from openwa.engines.base import Connected
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.sessions.support import (
    NORMAL_LIFE,
    PNG_SIGNATURE,
    auth_rows,
    detail_fields,
    ends_with,
    error_of,
    statuses,
    wait_history,
)

# What a start of a session with a kept device records: no QR.
RECONNECT = ["initializing", "authenticated", "ready"]


async def post(api: Api, path: str, **kwargs: Any) -> dict[str, Any]:
    response = await api.request("POST", path, **kwargs)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_chained(session: dict[str, Any]) -> None:
    """Each history entry starts where the one before it ended, in time order."""
    history = session["statusHistory"]
    for before, after in itertools.pairwise(history):
        assert after["previousStatus"] == before["status"], history
        assert parse_time(after["at"]) >= parse_time(before["at"]), history
    assert history[-1]["status"] == session["status"]
    for change in history:
        assert set(change) >= {"status", "previousStatus", "reason", "at"}


# Start and stop.


async def test_created_then_started_goes_the_normal_way(api: Api) -> None:
    await api.create_session("life", autoStart=False)
    # Four starts at once start it once.
    responses = await asyncio.gather(
        *(api.request("POST", "/api/sessions/life/start") for _ in range(4))
    )
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] != "created"
    ready = await api.wait_status("life", "ready")
    assert api.services.runtime.running_count == 1
    assert statuses(ready) == NORMAL_LIFE
    assert_chained(ready)
    assert ready["statusHistory"][0]["previousStatus"] is None
    assert ready["phoneNumber"]
    assert ready["phoneNumber"].isdigit()
    assert ready["pushName"]
    assert ready["lastError"] is None
    assert await auth_rows(api, ready["id"])

    # Starting a running session changes nothing.
    again = await post(api, "/api/sessions/life/start")
    assert again["status"] == "ready"
    assert statuses(again) == NORMAL_LIFE


async def test_stop_and_start_cycles_keep_the_device_and_ten_changes(api: Api) -> None:
    created = await api.create_session("pause")
    ready = await api.wait_status("pause", "ready")
    phone = ready["phoneNumber"]

    stopped = await post(api, f"/api/sessions/{created['id']}/stop")
    assert stopped["status"] == "stopped"
    assert statuses(stopped) == [*NORMAL_LIFE, "stopped"]
    assert stopped["statusHistory"][-1]["previousStatus"] == "ready"
    assert stopped["statusHistory"][-1]["reason"]
    # Stopping keeps the linked device.
    assert stopped["phoneNumber"] == phone
    assert await auth_rows(api, created["id"])
    assert not api.services.runtime.is_running(created["id"])

    # A second stop is harmless.
    again = await post(api, "/api/sessions/pause/stop")
    assert statuses(again) == statuses(stopped)

    # Started again: no QR, same number.
    await post(api, "/api/sessions/pause/start")
    ready = await wait_history(api, "pause", ends_with(["stopped", *RECONNECT]))
    assert statuses(ready) == [*NORMAL_LIFE, "stopped", *RECONNECT]
    assert ready["phoneNumber"] == phone
    assert_chained(ready)

    # Two more cycles: 5 + 3 * 4 = 17 changes happened; only the last 10 are kept.
    for _ in range(2):
        await post(api, "/api/sessions/pause/stop")
        await post(api, "/api/sessions/pause/start")
        # start answers once the session is initializing, so this waits for the new "ready".
        await api.wait_status("pause", "ready")
    session = await api.session(created["id"])
    tail = ["stopped", *RECONNECT]
    assert len(session["statusHistory"]) == 10
    assert statuses(session) == (NORMAL_LIFE + tail * 3)[-10:]
    assert statuses(session) == ["authenticated", "ready", *tail, *tail]
    assert session["phoneNumber"] == phone
    assert_chained(session)


async def test_stop_and_delete_before_linking(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("waiting")
    await api.wait_status("waiting", "qr_ready")
    stopped = await post(api, "/api/sessions/waiting/stop")
    assert stopped["status"] == "stopped"
    assert statuses(stopped) == ["created", "initializing", "qr_ready", "stopped"]
    error_of(await api.request("GET", "/api/sessions/waiting/qr"), 409, "QR_NOT_AVAILABLE")

    never = await api.create_session("never", autoStart=False)
    response = await api.request("POST", "/api/sessions/never/stop")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] in ("created", "stopped")
    assert not api.services.runtime.is_running(never["id"])
    assert api.services.runtime.running_count == 0

    # Delete while waiting for a scan.
    created = await api.create_session("halfway")
    await api.wait_status("halfway", "qr_ready")
    response = await api.request("DELETE", f"/api/sessions/{created['id']}")
    assert response.status_code == 200, response.text
    error_of(await api.request("GET", "/api/sessions/halfway"), 404, "SESSION_NOT_FOUND")
    assert await auth_rows(api, created["id"]) == []
    assert api.services.runtime.running_count == 0


async def test_restart(api: Api) -> None:
    await api.create_session("again")
    await api.create_session("cold", autoStart=False)
    phone = (await api.wait_status("again", "ready"))["phoneNumber"]

    restarted = await post(api, "/api/sessions/again/restart")
    assert restarted["status"] in ("initializing", "authenticated", "ready")
    ready = await wait_history(api, "again", ends_with(["stopped", *RECONNECT]))
    assert statuses(ready) == [*NORMAL_LIFE, "stopped", *RECONNECT]
    assert ready["phoneNumber"] == phone
    assert_chained(ready)

    # A restart of a session that never ran starts it.
    await post(api, "/api/sessions/cold/restart")
    cold = await api.wait_status("cold", "ready")
    assert "qr_ready" in statuses(cold)


# Logout and delete.


async def test_logout_forgets_the_device(api: Api) -> None:
    running = await api.create_session("leave")
    offline = await api.create_session("offline")
    await asyncio.gather(api.wait_status("leave", "ready"), api.wait_status("offline", "ready"))
    await post(api, "/api/sessions/offline/stop")
    assert await auth_rows(api, offline["id"])

    # Logout of a running session, and of a stopped one.
    for session in (running, offline):
        out = await post(api, f"/api/sessions/{session['name']}/logout")
        assert out["status"] == "stopped", out
        assert out["phoneNumber"] is None
        assert out["pushName"] is None
        assert statuses(out) == [*NORMAL_LIFE, "stopped"]
        assert await auth_rows(api, session["id"]) == []
        assert (await api.session(session["id"]))["phoneNumber"] is None
        assert not api.services.runtime.is_running(session["id"])

    # The next start must link again: a QR shows.
    for session in (running, offline):
        await post(api, f"/api/sessions/{session['name']}/start")
    for session in (running, offline):
        relinked = await wait_history(
            api, session["id"], ends_with(["initializing", "qr_ready", "authenticated", "ready"])
        )
        assert statuses(relinked) == [*NORMAL_LIFE, "stopped", *NORMAL_LIFE[1:]]
        assert relinked["phoneNumber"]
        assert await auth_rows(api, session["id"])


async def test_delete_removes_session_and_auth_state(api: Api) -> None:
    keep = await api.create_session("keep")
    doomed = await api.create_session("doomed")
    unborn = await api.create_session("unborn", autoStart=False)
    await asyncio.gather(api.wait_status("keep", "ready"), api.wait_status("doomed", "ready"))
    assert await auth_rows(api, doomed["id"])

    response = await api.request("DELETE", "/api/sessions/doomed")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"id": doomed["id"], "deleted": True}

    error_of(await api.request("GET", "/api/sessions/doomed"), 404, "SESSION_NOT_FOUND")
    error_of(await api.request("GET", f"/api/sessions/{doomed['id']}"), 404, "SESSION_NOT_FOUND")
    error_of(await api.request("DELETE", "/api/sessions/doomed"), 404, "SESSION_NOT_FOUND")
    assert await auth_rows(api, doomed["id"]) == []
    assert not api.services.runtime.is_running(doomed["id"])

    # A session that never started deletes too (by id here).
    response = await api.request("DELETE", f"/api/sessions/{unborn['id']}")
    assert response.status_code == 200, response.text
    error_of(await api.request("GET", "/api/sessions/unborn"), 404, "SESSION_NOT_FOUND")

    # The other session is untouched.
    listed = (await api.request("GET", "/api/sessions")).json()
    assert [s["name"] for s in listed["data"]] == ["keep"]
    assert (await api.session("keep"))["status"] == "ready"
    assert await auth_rows(api, keep["id"])
    assert api.services.runtime.running_count == 1


# QR.


async def test_what_each_status_refuses(slow_api: Api) -> None:
    """QR, pairing code and mock controls against a session that cannot serve them."""
    api = slow_api
    pairing = {"phoneNumber": "+15550100123"}

    async def no_qr(when: str) -> None:
        for accept in (None, "image/png", "application/json"):
            headers = {"Accept": accept} if accept else {}
            response = await api.request("GET", "/api/sessions/idle/qr", headers=headers)
            error = error_of(response, 409, "QR_NOT_AVAILABLE", (when, accept))
            assert error["message"]

    async def not_running(when: str) -> None:
        await no_qr(when)
        response = await api.request("POST", "/api/sessions/idle/pairing-code", json=pairing)
        error_of(response, 409, "SESSION_NOT_READY", (when, "pairing-code"))
        for path in ("mock/scan", "mock/disconnect"):
            response = await api.request("POST", f"/api/sessions/idle/{path}")
            assert response.status_code == 409, (when, path, response.text)
            code = response.json()["error"]["code"]
            assert code in ("SESSION_NOT_READY", "QR_NOT_AVAILABLE"), (when, path, code)

    created = await api.create_session("idle", autoStart=False)
    await not_running("created")

    await post(api, "/api/sessions/idle/start")
    # The QR is there from qr_ready until the scan.
    qr = await wait_for(
        lambda: api.request("GET", f"/api/sessions/{created['id']}/qr"),
        lambda r: r.status_code == 200,
        5,
        "a QR",
    )
    assert qr.json()["data"]["image"].startswith("data:image/png;base64,")
    await post(api, "/api/sessions/idle/mock/scan")
    ready = await api.wait_status("idle", "ready")

    # Ready: no QR; linked already, so the engine refuses a pairing code, and there
    # is nothing to scan.
    await no_qr("ready")
    response = await api.request("POST", "/api/sessions/idle/pairing-code", json=pairing)
    error = error_of(response, 422, "ENGINE_ERROR")
    assert error["message"]
    error_of(await api.request("POST", "/api/sessions/idle/mock/scan"), 409, "QR_NOT_AVAILABLE")
    for body in ({"reason": "x" * 201}, {"why": "unknown field"}, {"reason": 5}):
        response = await api.request("POST", "/api/sessions/idle/mock/disconnect", json=body)
        error_of(response, 400, "VALIDATION_ERROR", body)
    after = await api.session("idle")
    assert statuses(after) == NORMAL_LIFE
    assert after["phoneNumber"] == ready["phoneNumber"]

    await post(api, "/api/sessions/idle/stop")
    await not_running("stopped")
    assert (await api.session("idle"))["status"] == "stopped"


# Pairing code.


async def test_pairing_code_links_with_that_number(app_factory: AppFactory) -> None:
    # Long enough that the QR's own link cannot come first, short enough to wait for.
    api, manager = await app_factory.start(mock_auth_delay_ms=1000)
    try:
        await api.create_session("paired")
        await api.wait_status("paired", "qr_ready")
        response = await api.request(
            "POST", "/api/sessions/paired/pairing-code", json={"phoneNumber": "+62 812-3456-7890"}
        )
        assert response.status_code == 200, response.text
        code = response.json()["data"]["code"]
        assert isinstance(code, str)
        assert len(code.replace("-", "")) == 8
        ready = await api.wait_status("paired", "ready")
        assert ready["phoneNumber"] == "6281234567890"
        assert statuses(ready) == NORMAL_LIFE
    finally:
        await AppFactory.stop(api, manager)


async def test_pairing_code_rejects_bad_bodies(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("strict")
    await api.wait_status("strict", "qr_ready")
    cases: list[tuple[Any, str]] = [
        ({}, "body.phoneNumber"),
        ({"phoneNumber": 6281234567890}, "body.phoneNumber"),
        ({"phoneNumber": None}, "body.phoneNumber"),
        ({"phoneNumber": "123"}, "body.phoneNumber"),
        ({"phoneNumber": "+1" + "5" * 40}, "body.phoneNumber"),
        ({"phoneNumber": "+15550100123", "extra": True}, "body.extra"),
        (["+15550100123"], "body"),
    ]
    for body, field in cases:
        response = await api.request("POST", "/api/sessions/strict/pairing-code", json=body)
        error = error_of(response, 400, "VALIDATION_ERROR", body)
        assert field in detail_fields(error), (body, error)
    response = await api.request("POST", "/api/sessions/strict/pairing-code")
    error_of(response, 400, "VALIDATION_ERROR", "no body")

    # Numbers that cannot exist never reach the engine.
    for phone in ("not-a-phone", "+0 000 000", "++++++++", "+1 555"):
        response = await api.request(
            "POST", "/api/sessions/strict/pairing-code", json={"phoneNumber": phone}
        )
        assert response.status_code == 400, (phone, response.text)
        assert response.json()["error"]["code"] in ("INVALID_CHAT_ID", "VALIDATION_ERROR")

    session = await api.session("strict")
    assert session["status"] == "qr_ready"
    assert session["phoneNumber"] is None


# Mock controls.


async def test_qr_while_qr_ready_then_mock_scan(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("scan")
    await api.wait_status("scan", "qr_ready")

    response = await api.request("GET", "/api/sessions/scan/qr")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    qr = response.json()["data"]
    assert set(qr) >= {"qr", "image"}
    assert isinstance(qr["qr"], str)
    assert qr["qr"]
    prefix = "data:image/png;base64,"
    assert qr["image"].startswith(prefix)
    assert base64.b64decode(qr["image"][len(prefix) :]).startswith(PNG_SIGNATURE)

    png = await api.request("GET", "/api/sessions/scan/qr", headers={"Accept": "image/png"})
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_SIGNATURE)
    assert len(png.content) > 100

    # The same QR stays until it changes; JSON is the answer to anything but image/png.
    for accept in (None, "application/json", "*/*"):
        headers = {"Accept": accept} if accept else {}
        response = await api.request("GET", "/api/sessions/scan/qr", headers=headers)
        assert response.status_code == 200, (accept, response.text)
        assert response.json()["data"]["qr"] == qr["qr"]

    response = await api.request("POST", "/api/sessions/scan/mock/scan")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "scan"
    # MOCK_AUTH_DELAY_MS is a minute here: being ready within seconds is the scan's doing.
    ready = await api.wait_status("scan", "ready", timeout=5)
    assert statuses(ready) == NORMAL_LIFE
    assert ready["phoneNumber"]
    error_of(await api.request("GET", "/api/sessions/scan/qr"), 409, "QR_NOT_AVAILABLE")

    # Linked: there is nothing to scan.
    error_of(await api.request("POST", "/api/sessions/scan/mock/scan"), 409, "QR_NOT_AVAILABLE")
    assert (await api.session("scan"))["status"] == "ready"


async def test_mock_disconnect_reconnects_by_itself(api: Api) -> None:
    await api.create_session("flaky")
    ready = await api.wait_status("flaky", "ready")
    response = await api.request(
        "POST", "/api/sessions/flaky/mock/disconnect", json={"reason": "cable cut"}
    )
    assert response.status_code == 200, response.text
    back = await wait_history(api, "flaky", ends_with(["disconnected", *RECONNECT]))
    assert statuses(back) == [*NORMAL_LIFE, "disconnected", *RECONNECT]
    dropped = back["statusHistory"][5]
    assert dropped["previousStatus"] == "ready"
    assert dropped["reason"] == "cable cut"
    assert back["phoneNumber"] == ready["phoneNumber"]
    assert back["lastError"] is None
    assert_chained(back)

    # Without a body, with a reason of its own.
    response = await api.request("POST", "/api/sessions/flaky/mock/disconnect")
    assert response.status_code == 200, response.text
    again = await wait_history(
        api, "flaky", lambda h: h.count("disconnected") == 2 and h[-1] == "ready"
    )
    assert statuses(again)[-4:] == ["disconnected", *RECONNECT]
    assert again["statusHistory"][-4]["reason"]


async def test_losses_before_the_reconnect_share_it(app_factory: AppFactory) -> None:
    """A second Disconnected before the reconnect has begun is the same loss: each got a
    reconnect of its own, and the session went through a cycle of connecting for each
    (five `mock/disconnect` calls in a row: five cycles over 17 s)."""
    # A first delay long enough that the five drops surely come within it.
    async with app_factory.running(reconnect_base_s=4.0) as api:
        await _five_drops_one_reconnect(api)


async def _five_drops_one_reconnect(api: Api) -> None:
    session = await api.create_session("flappy")
    await api.wait_status("flappy", "ready")
    drops = await asyncio.gather(
        *(
            api.request(
                "POST", "/api/sessions/flappy/mock/disconnect", json={"reason": f"drop {n}"}
            )
            for n in range(5)
        )
    )
    for response in drops:
        assert response.status_code == 200, response.text
    running = api.services.runtime._running[session["id"]]

    async def applied() -> bool:
        return running.events.empty() and not running.taken

    await wait_for(applied, bool, 10, "the drops applied")
    assert running.attempts == 1  # one reconnect scheduled, not five
    back = await wait_history(api, "flappy", ends_with(["disconnected", *RECONNECT]))
    assert statuses(back) == [*NORMAL_LIFE, "disconnected", *RECONNECT]


async def test_back_by_itself_cancels_the_waiting_reconnect_and_a_later_loss_gets_one(
    api: Api,
) -> None:
    """A Connected while a reconnect waits its delay cancels it (it would take the
    session down again), and leaves no mark of it behind: a reconnect cancelled before
    it ever ran never cleared its own, and every later loss was taken as already being
    mended (the session never reconnected again)."""
    session = await api.create_session("bouncy")
    await api.wait_status("bouncy", "ready")
    runtime = api.services.runtime
    running = runtime._running[session["id"]]
    async with runtime.lock(session["id"]):
        runtime._schedule_reconnect(running)  # a loss: its reconnect waits its delay
        await runtime._apply_status(running, Connected())  # back at once, by itself
    assert running.reconnect is None
    assert not running.reconnect_waiting
    response = await api.request("POST", "/api/sessions/bouncy/mock/disconnect")
    assert response.status_code == 200, response.text
    back = await wait_history(api, "bouncy", ends_with(["disconnected", *RECONNECT]))
    assert back["status"] == "ready"


async def test_reasons_are_redacted_before_anyone_sees_them(api: Api) -> None:
    """Reasons are an engine's words, and every role, stream and webhook reads them: a
    proxy URL's password or a key quoted in one is masked before it is stored."""
    await api.create_session("leaky")
    await api.wait_status("leaky", "ready")
    reason = (
        "connect failed: http://user:hunter2-pw@proxy.example:3128 with owa_0123456789abcdefghij"
    )
    response = await api.request(
        "POST", "/api/sessions/leaky/mock/disconnect", json={"reason": reason}
    )
    assert response.status_code == 200, response.text
    back = await wait_history(api, "leaky", ends_with(["disconnected", *RECONNECT]))
    dropped = back["statusHistory"][-len(RECONNECT) - 1]
    assert dropped["reason"].startswith("connect failed: http://***@proxy.example:3128")
    events = await api.request("GET", "/api/events", params={"events": "session.status"})
    for text in (str(back), events.text):
        assert "hunter2-pw" not in text
        assert "0123456789abcdefghij" not in text


# MAX_SESSIONS.


async def test_session_limit_on_create_start_and_restart(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(max_sessions=2)
    try:
        await api.create_session("a")
        await api.create_session("b")
        # A third session that would start is refused, and leaves no row behind.
        response = await api.request("POST", "/api/sessions", json={"name": "c"})
        error_of(response, 409, "SESSION_LIMIT_REACHED", "create")
        error_of(await api.request("GET", "/api/sessions/c"), 404, "SESSION_NOT_FOUND")
        listed = (await api.request("GET", "/api/sessions")).json()
        assert listed["pagination"]["total"] == 2
        # One that does not start needs no room.
        idle = await api.create_session("c", autoStart=False)
        assert idle["status"] == "created"
        await asyncio.gather(api.wait_status("a", "ready"), api.wait_status("b", "ready"))

        error = error_of(
            await api.request("POST", "/api/sessions/c/start"), 409, "SESSION_LIMIT_REACHED"
        )
        assert error["message"]
        assert (await api.session("c"))["status"] == "created"

        # A running session restarts in its own place.
        await post(api, "/api/sessions/a/restart")
        await wait_history(api, "a", ends_with(["stopped", *RECONNECT]))

        # A stopped session over the limit cannot start.
        await post(api, "/api/sessions/a/stop")
        await post(api, "/api/sessions/c/start")
        await api.wait_status("c", "ready")
        error_of(await api.request("POST", "/api/sessions/a/start"), 409, "SESSION_LIMIT_REACHED")
        error_of(await api.request("POST", "/api/sessions/a/restart"), 409, "SESSION_LIMIT_REACHED")
        assert (await api.session("a"))["status"] == "stopped"
        assert api.services.runtime.running_count == 2

        # Deleting a running one makes room.
        assert (await api.request("DELETE", "/api/sessions/b")).status_code == 200
        await post(api, "/api/sessions/a/start")
        await api.wait_status("a", "ready")
    finally:
        await AppFactory.stop(api, manager)


async def test_concurrent_starts_respect_the_session_limit(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(max_sessions=2)
    try:
        for name in "pqrs":
            await api.create_session(name, autoStart=False)
        responses = await asyncio.gather(
            *(api.request("POST", f"/api/sessions/{name}/start") for name in "pqrs")
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 409, 409], [r.text for r in responses]
        assert api.services.runtime.running_count == 2
        listed = (await api.request("GET", "/api/sessions")).json()["data"]
        assert sorted(s["status"] != "created" for s in listed) == [False, False, True, True]
    finally:
        await AppFactory.stop(api, manager)


async def test_a_shutdown_stops_its_sessions_side_by_side(api: Api) -> None:
    """One after another, a slow disconnect (an engine process that answers late) of
    each session used up the shutdown's bound for those after it, whose queued reports
    were then lost: the sessions are stopped at once, each under its own lock."""
    runtime = api.services.runtime
    ids = []
    for name in ("side-a", "side-b", "side-c"):
        created = await api.create_session(name, engine="mock")
        await api.wait_status(created["id"], "ready")
        ids.append(created["id"])
    release = asyncio.Event()
    in_flight: set[str] = set()
    for session_id in ids:
        client = runtime._running[session_id].client
        assert client is not None
        disconnect = client.disconnect

        async def slow(session_id: str = session_id, disconnect: Any = disconnect) -> None:
            in_flight.add(session_id)
            await release.wait()
            await disconnect()

        client.disconnect = slow  # type: ignore[method-assign]
    shutdown = asyncio.create_task(runtime.shutdown())
    try:
        await wait_for(
            lambda: asyncio.sleep(0, set(in_flight)),
            lambda now: now == set(ids),
            10.0,
            "every session's disconnect in flight at once",
        )
    finally:
        release.set()
        await shutdown
    assert not runtime._running
