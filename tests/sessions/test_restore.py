"""Restart of the server: running sessions come back without a new scan."""

from __future__ import annotations

from datetime import datetime

from tests.fixtures.app import AppFactory
from tests.sessions.support import NORMAL_LIFE, auth_rows, statuses

RUNNING = {"initializing", "qr_ready", "authenticated", "ready"}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_running_session_comes_back_without_a_scan(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start()
    try:
        created = await api.create_session("survivor", config={"metadata": {"a": "b"}})
        before = await api.wait_status("survivor", "ready")
        assert statuses(before) == NORMAL_LIFE
    finally:
        await AppFactory.stop(api, manager)

    phone = before["phoneNumber"]
    assert phone
    last_ready = parse_time(before["statusHistory"][-1]["at"])
    for _ in range(2):  # twice: a restored session is restored again
        api, manager = await app_factory.start()
        try:
            # Restore runs during start-up: the session is on its way at once.
            now = await api.session(created["id"])
            assert now["status"] in RUNNING, now
            after = await api.wait_status(created["id"], "ready")
            # What was recorded since the last "ready" before the restart: no QR.
            since = [
                change["status"]
                for change in after["statusHistory"]
                if parse_time(change["at"]) > last_ready
            ]
            assert "qr_ready" not in since, after["statusHistory"]
            assert since[-3:] == ["initializing", "authenticated", "ready"], since
            last_ready = parse_time(after["statusHistory"][-1]["at"])
            assert after["phoneNumber"] == phone
            assert after["pushName"] == before["pushName"]
            assert after["config"] == {"metadata": {"a": "b"}}
            assert after["id"] == created["id"]
            assert after["lastError"] is None
            assert await auth_rows(api, created["id"])
            qr = await api.request("GET", "/api/sessions/survivor/qr")
            assert qr.status_code == 409
        finally:
            await AppFactory.stop(api, manager)


async def test_sessions_stopped_or_never_started_stay_off(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start()
    try:
        await api.create_session("runner")
        await api.create_session("stopper")
        await api.create_session("idler", autoStart=False)
        await api.create_session("leaver")
        await api.wait_status("runner", "ready")
        await api.wait_status("stopper", "ready")
        await api.wait_status("leaver", "ready")
        assert (await api.request("POST", "/api/sessions/stopper/stop")).status_code == 200
        assert (await api.request("POST", "/api/sessions/leaver/logout")).status_code == 200
        stopped_before = await api.session("stopper")
        idle_before = await api.session("idler")
    finally:
        await AppFactory.stop(api, manager)

    api, manager = await app_factory.start()
    try:
        # Restore has run by now; anything it started would already show.
        stopped = await api.session("stopper")
        assert stopped["status"] == "stopped"
        assert stopped["statusHistory"] == stopped_before["statusHistory"]
        assert stopped["phoneNumber"] == stopped_before["phoneNumber"]
        idle = await api.session("idler")
        assert idle["status"] == "created"
        assert idle["statusHistory"] == idle_before["statusHistory"]
        left = await api.session("leaver")
        assert left["status"] == "stopped"
        assert left["phoneNumber"] is None

        await api.wait_status("runner", "ready")
        assert api.services.runtime.running_count == 1
        for session in (stopped, idle, left):
            assert not api.services.runtime.is_running(session["id"])

        # The stopped one starts on request, still without a scan.
        assert (await api.request("POST", "/api/sessions/stopper/start")).status_code == 200
        ready = await api.wait_status("stopper", "ready")
        assert ready["phoneNumber"] == stopped_before["phoneNumber"]
        assert statuses(ready)[-3:] == ["initializing", "authenticated", "ready"]
        # The logged-out one needs a scan again.
        assert (await api.request("POST", "/api/sessions/leaver/start")).status_code == 200
        relinked = await api.wait_status("leaver", "ready")
        assert statuses(relinked)[-4:] == ["initializing", "qr_ready", "authenticated", "ready"]
    finally:
        await AppFactory.stop(api, manager)


async def test_session_waiting_for_scan_shows_a_qr_again(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(mock_auth_delay_ms=60_000)
    try:
        await api.create_session("unlinked")
        await api.wait_status("unlinked", "qr_ready")
    finally:
        await AppFactory.stop(api, manager)

    api, manager = await app_factory.start(mock_auth_delay_ms=60_000)
    try:
        again = await api.wait_status("unlinked", "qr_ready")
        assert again["phoneNumber"] is None
        response = await api.request("GET", "/api/sessions/unlinked/qr")
        assert response.status_code == 200, response.text
        scan = await api.request("POST", "/api/sessions/unlinked/mock/scan")
        assert scan.status_code == 200, scan.text
        await api.wait_status("unlinked", "ready", timeout=5)
    finally:
        await AppFactory.stop(api, manager)


async def test_restore_respects_the_session_limit(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(max_sessions=3)
    try:
        for name in ("r1", "r2", "r3"):
            await api.create_session(name)
        for name in ("r1", "r2", "r3"):
            await api.wait_status(name, "ready")
    finally:
        await AppFactory.stop(api, manager)

    api, manager = await app_factory.start(max_sessions=2)
    try:
        assert api.services.runtime.running_count == 2
        sessions = [await api.session(name) for name in ("r1", "r2", "r3")]
        left_out = [s for s in sessions if not api.services.runtime.is_running(s["id"])]
        assert len(left_out) == 1
        assert left_out[0]["status"] == "failed"
        assert left_out[0]["lastError"]
        for session in sessions:
            if session is not left_out[0]:
                await api.wait_status(session["id"], "ready")
    finally:
        await AppFactory.stop(api, manager)
