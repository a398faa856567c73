"""Baileys and whatsapp-web.js up to the network's edge: the real bridge program with the
real libraries in Node.js, their connection attempts ending at loopback proxies (this
machine has no route to WhatsApp), supervised and restarted by the real engine."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.bridge.engine import BridgeClient, BridgeEngine
from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.sessions.support import statuses

WHATSAPP = "web.whatsapp.com:443"
SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


async def started(api: Api, engine: str, **config: Any) -> str:
    name = f"{engine.replace('.', '')}-{os.urandom(3).hex()}"
    session = await api.create_session(name, engine=engine, autoStart=False, config=config)
    response = await api.request("POST", f"/api/sessions/{session['id']}/start")
    assert response.status_code == 200, response.text
    return str(session["id"])


def bridge_of(api: Api, name: str) -> BridgeEngine:
    engine = api.services.engines.get(name)
    assert isinstance(engine, BridgeEngine)
    return engine


async def retried(api: Api, session_id: str, timeout: float = 40) -> dict[str, Any]:
    def twice(s: dict[str, Any]) -> bool:
        return statuses(s).count("disconnected") >= 2 and s["lastError"] is not None

    found: dict[str, Any] = await wait_for(
        lambda: api.session(session_id), twice, timeout, "retries"
    )
    return found


@SQLITE_ONLY
async def test_a_baileys_session_reaches_whatsapp_through_its_proxy_and_retries(
    app_factory: AppFactory, recorder: RecordingProxy
) -> None:
    async with app_factory.running(engine_type="baileys") as api:
        session_id = await started(api, "baileys", proxy=f"http://127.0.0.1:{recorder.port}")
        session = await retried(api, session_id)
        assert session["engine"] == "baileys"
        assert f"http CONNECT {WHATSAPP} HTTP/1.1" in recorder.requests
        assert set(recorder.requests) == {f"http CONNECT {WHATSAPP} HTTP/1.1"}
        assert "WhatsApp" in session["lastError"] or "connection" in session["lastError"]
        ready = await api.request("GET", "/health/ready")
        assert ready.status_code == 200, ready.text


@SQLITE_ONLY
async def test_a_killed_bridge_takes_down_only_its_own_sessions_which_come_back(
    app_factory: AppFactory,
) -> None:
    first, second = await SilentProxy().start(), await SilentProxy().start()
    try:
        async with app_factory.running(baileys_sessions_per_worker=1) as api:
            one = await started(api, "baileys", proxy=first.url)
            two = await started(api, "baileys", proxy=second.url)
            await wait_for(lambda: _count(first), bool, 30, "the first session's dial")
            await wait_for(lambda: _count(second), bool, 30, "the second session's dial")
            engine = bridge_of(api, "baileys")
            shard_one, shard_two = engine.shards.of(one), engine.shards.of(two)
            assert shard_one is not None
            assert shard_two is not None
            assert shard_one is not shard_two
            pid_one, pid_two = shard_one.pid, shard_two.pid
            assert pid_one
            assert pid_two
            assert pid_one != pid_two
            dials_before = len(first.requests)
            os.kill(pid_one, signal.SIGKILL)
            # Its session dials again from a new bridge, with no scan.
            await wait_for(lambda: _count(first), lambda n: n > dials_before, 40, "a new dial")
            assert shard_one.pid not in (None, pid_one)
            assert shard_two.pid == pid_two
            assert len(second.requests) == 1
            session = await api.session(one)
            assert "bridge exited" in " ".join(
                str(c.get("reason")) for c in session["statusHistory"]
            )
    finally:
        await first.close()
        await second.close()


async def _count(proxy: SilentProxy) -> int:
    return len(proxy.requests)


@SQLITE_ONLY
async def test_a_webjs_session_drives_chromium_to_whatsapp_through_its_proxy(
    app_factory: AppFactory, recorder: RecordingProxy
) -> None:
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed")
    data_dir = app_factory.settings().data_dir
    async with app_factory.running() as api:
        session_id = await started(
            api, "whatsapp-web.js", proxy=f"http://127.0.0.1:{recorder.port}"
        )
        wanted = f"http CONNECT {WHATSAPP} HTTP/1.1"
        await wait_for(lambda: _requests(recorder), lambda r: wanted in r, 60, "chromium's CONNECT")
        # The refusal ends the attempt: disconnected, with why (the runtime retries).
        session = await wait_for(
            lambda: api.session(session_id),
            lambda s: "disconnected" in statuses(s) and s["lastError"],
            60,
            "the failed attempt",
        )
        assert session["engine"] == "webjs"
        assert "whatsapp-web.js" in session["lastError"]
        engine = bridge_of(api, "webjs")
        shard = engine.shards.of(session_id)
        assert shard is not None
        assert shard.pid is not None
        stop = await api.request("POST", f"/api/sessions/{session_id}/stop")
        assert stop.status_code == 200, stop.text

    # The app's shutdown ended the bridge and its browsers.
    async def ours() -> set[int]:
        return _browsers(data_dir)

    await wait_for(ours, lambda left: not left, 20, "no browser left")


@SQLITE_ONLY
async def test_a_killed_webjs_bridge_leaves_no_browser_behind_and_its_session_dials_again(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed")
    data_dir = app_factory.settings().data_dir

    async def dials() -> int:
        return sum(WHATSAPP in line for line in silent.requests)

    async with app_factory.running() as api:
        session_id = await started(api, "webjs", proxy=silent.url)
        await wait_for(dials, bool, 60, f"chromium's dial, held by the proxy: {silent.requests}")
        launched = _browsers(data_dir)
        assert launched
        shard = bridge_of(api, "webjs").shards.of(session_id)
        assert shard is not None
        assert shard.pid is not None
        os.kill(shard.pid, signal.SIGKILL)

        async def left() -> set[int]:
            return _browsers(data_dir) & launched

        await wait_for(left, lambda pids: not pids, 20, "the killed bridge's browsers ended")
        await wait_for(dials, lambda n: n >= 2, 60, "a dial from the new bridge")

    async def ours() -> set[int]:
        return _browsers(data_dir)

    await wait_for(ours, lambda pids: not pids, 20, "no browser left")


async def _requests(proxy: RecordingProxy) -> list[str]:
    return list(proxy.requests)


def _browsers(data_dir: Path) -> set[int]:
    """Chromium processes of the app whose data directory is `data_dir` (their profile
    lives under it), so browsers of tests running beside this one do not count."""
    found = set()
    mark = str(data_dir).encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if "chrom" in name and mark in cmdline:
                found.add(int(pid))
    return found


@SQLITE_ONLY
async def test_webjs_sessions_are_capped_and_a_missing_node_is_a_clear_error(
    app_factory: AppFactory,
) -> None:
    async with app_factory.running(node_binary="/nonexistent/node", webjs_max_sessions=1) as api:
        engines = await api.request("GET", "/api/engines")
        assert engines.status_code == 200, engines.text
        by_name = {e["name"]: e for e in engines.json()["data"]}
        assert by_name["webjs"]["available"] is False
        assert "Node.js was not found" in by_name["webjs"]["reason"]
        assert by_name["webjs"]["maxSessions"] == 1
        assert by_name["mock"]["available"] is True
        first = await api.create_session("first", engine="webjs")
        await api.request("POST", f"/api/sessions/{first['id']}/start")
        session = await wait_for(
            lambda: api.session(first["id"]), lambda s: s["lastError"], 20, "the error"
        )
        assert "Node.js was not found" in session["lastError"]
        body = {"name": "second", "engine": "whatsapp-web.js"}
        refused_create = await api.request("POST", "/api/sessions", json=body)
        assert refused_create.status_code == 409, refused_create.text
        assert refused_create.json()["error"]["details"]["engine"] == "webjs"
        listed = (await api.request("GET", "/api/sessions")).json()["data"]
        assert [s["name"] for s in listed] == ["first"]  # no half-made session left
        second = await api.create_session("second", engine="whatsapp-web.js", autoStart=False)
        assert second["engine"] == "webjs"
        refused = await api.request("POST", f"/api/sessions/{second['id']}/start")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "SESSION_LIMIT_REACHED"
        assert error["details"]["engine"] == "webjs"
        assert error["details"]["maxSessions"] == 1
        # Other engines are not held by the webjs cap.
        other = await api.create_session("other", engine="mock")
        started_other = await api.request("POST", f"/api/sessions/{other['id']}/start")
        assert started_other.status_code == 200, started_other.text


@SQLITE_ONLY
async def test_an_attempt_that_hears_nothing_is_ended_and_tried_again(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    """A proxy that swallows the dial: Baileys would wait past its own timeout; the
    engine ends the attempt, says why, and the runtime dials again."""
    async with app_factory.running() as api:
        bridge_of(api, "baileys").attempt_timeout_s = 1.0
        session_id = await started(api, "baileys", proxy=silent.url)
        session = await retried(api, session_id, timeout=30)
        assert "no answer from WhatsApp in 1 s" in session["lastError"]
        await wait_for(lambda: _count(silent), lambda n: n >= 2, 30, "a second dial")


@SQLITE_ONLY
async def test_restart_required_after_a_scan_starts_a_new_socket_at_once(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    """Baileys' 515 (restart required, right after a scan) makes the engine start the
    session's socket again with the new creds, without a lost connection. (The frame
    handler hands the start to a task: awaiting the bridge's answer on the loop that
    reads it would wait for itself; the frame here is handed in directly.)"""
    async with app_factory.running() as api:
        session_id = await started(api, "baileys", proxy=silent.url)
        await wait_for(lambda: _count(silent), bool, 30, "the first dial")
        client = api.services.runtime.client(session_id)
        assert isinstance(client, BridgeClient)
        close = {"connection": "close", "lastDisconnect": {"statusCode": 515, "message": "restart"}}
        frame = {"kind": "event", "name": "connection.update", "data": close}
        await asyncio.wait_for(client.on_frame(frame), 5)
        await wait_for(lambda: _count(silent), lambda n: n >= 2, 30, "a new socket's dial")
        session = await api.session(session_id)
        assert "disconnected" not in statuses(session)
        # Another before the connection opened is a drop, which the runtime's backoff
        # paces: restarted at once each time, an outdated client looped on 515.
        await asyncio.wait_for(client.on_frame(frame), 5)
        await wait_for(
            lambda: api.session(session_id),
            lambda s: "disconnected" in statuses(s),
            30,
            "the second 515 as a drop",
        )
