"""The first Baileys or whatsapp-web.js session on a machine installs the bridge (`npm ci`,
about 20 s) without holding the request that created it: the session is answered at once
and stays `initializing` until the install is done, and a failed install is reported as
a failed connect. A stand-in `npm` (waiting for a gate file) and the stand-in bridge
(tests/engines/bridge/standin) keep everything on this machine."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from openwa.engines.bridge.install import NodeRuntime
from tests.fixtures.app import AppFactory, wait_for

STANDIN = Path(__file__).parent / "standin"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`node` (the stand-in) and `npm` side by side, as an install of Node.js has them:
    `npm ci` logs its call to `npm.log`, waits until the file `gate` exists, then exits
    with `NPM_EXIT` (0)."""
    directory = tmp_path / "tools"
    directory.mkdir()
    node = directory / "node"
    node.write_text(f'#!/bin/sh\nexec "{STANDIN / "node"}" "$@"\n')
    npm = directory / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{directory / "npm.log"}"\n'
        f'while [ ! -e "{directory / "gate"}" ]; do sleep 0.05; done\n'
        'echo "npm stand-in: exit ${NPM_EXIT:-0}"\n'
        "exit ${NPM_EXIT:-0}\n"
    )
    for tool in (node, npm):
        tool.chmod(0o755)
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "sends.log"))
    monkeypatch.setenv("STANDIN_PYTHON", sys.executable)
    return directory


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_the_first_session_is_answered_before_the_bridge_is_installed(
    app_factory: AppFactory, tools: Path, tmp_path: Path
) -> None:
    bridge = tmp_path / "bridge"
    settings = {"node_binary": str(tools / "node"), "node_bridge_dir": bridge}
    async with app_factory.running(**settings) as api:
        # While `npm ci` waits for its gate, the create is answered all the same.
        created = await asyncio.wait_for(api.create_session("first", engine="baileys"), 15)
        assert created["status"] == "initializing", created
        assert not NodeRuntime(str(tools / "node"), bridge).installed()
        (tools / "gate").touch()
        await api.wait_status(created["id"], "ready", timeout=20)
        assert NodeRuntime(str(tools / "node"), bridge).installed()


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_failed_install_is_a_failed_connect_and_is_tried_again(
    app_factory: AppFactory, tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPM_EXIT", "1")
    (tools / "gate").touch()
    settings = {"node_binary": str(tools / "node"), "node_bridge_dir": tmp_path / "bridge"}
    async with app_factory.running(**settings) as api:
        created = await asyncio.wait_for(api.create_session("failing", engine="baileys"), 15)
        session = await wait_for(
            lambda: api.session(created["id"]),
            lambda s: "npm ci failed" in (s["lastError"] or ""),
            15,
            "the failed install to be reported",
        )
        assert "connect failed" in session["lastError"], session
        # The reconnect tries the install again: once npm works, the session comes up.
        monkeypatch.setenv("NPM_EXIT", "0")
        await api.wait_status(created["id"], "ready", timeout=30)


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_sessions_waiting_for_the_install_share_it_and_one_may_stop(
    app_factory: AppFactory, tools: Path, tmp_path: Path
) -> None:
    """Two sessions wait for one install; the one stopped meanwhile does not cancel it."""
    settings = {"node_binary": str(tools / "node"), "node_bridge_dir": tmp_path / "bridge"}
    async with app_factory.running(**settings) as api:
        first = await asyncio.wait_for(api.create_session("first", engine="baileys"), 15)
        second = await asyncio.wait_for(api.create_session("second", engine="baileys"), 15)
        await wait_for(
            lambda: asyncio.to_thread((tools / "npm.log").exists),
            bool,
            15,
            "npm ci to start",
        )
        stopped = await api.request("POST", f"/api/sessions/{first['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        (tools / "gate").touch()
        await api.wait_status(second["id"], "ready", timeout=20)
        assert (await api.session(first["id"]))["status"] == "stopped"
        assert (tools / "npm.log").read_text().splitlines() == ["ci --omit=dev --no-progress"]
