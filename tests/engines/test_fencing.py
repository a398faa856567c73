"""Engine processes fence themselves: a whatsmeow worker or a Node.js bridge that hears
nothing from its API process for `fence_after_s` drops its sessions' connections (auth
kept), reports each one `Disconnected` ("fenced: ..."), and does not reconnect until
told to; while heartbeats come, nothing happens. Real child processes, real adapters:
the whatsmeow worker with Go's client a stand-in at its edge (`standin_worker`), and the
bridge running Baileys, its dial held by a silent loopback proxy.

Most tests hold the heartbeats (`heartbeats_held`), all else going on: SIGSTOP would
pause the test too. One pauses a real API process of its own (`silent_owner`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from openwa.config import Settings
from openwa.engines.base import Disconnected, EngineClient
from openwa.engines.bridge.engine import BAILEYS, BridgeEngine
from openwa.engines.bridge.install import NodeRuntime
from openwa.engines.children import ChildProcess
from openwa.engines.shards import ShardMap
from tests.engines.memory_session import Session
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import started, whatsmeow
from tests.fixtures.app import AppFactory, wait_for

FENCE_S = 1.0
# How late a fence may come on a loaded machine (timers, a busy loop, the frame's trip).
MARGIN_S = 2.0


def child_of(shards: ShardMap, session_id: str) -> ChildProcess:
    shard = shards.of(session_id)
    assert shard is not None
    assert shard.process is not None
    return shard.process


async def fenced(session: Session, child: ChildProcess) -> Disconnected:
    """Hold the heartbeats: within the fence's time (and a margin) the session must be
    reported disconnected, saying it was fenced."""
    before = len(session.of(Disconnected))
    child.heartbeats_held = True
    await session.count(Disconnected, before + 1, FENCE_S + MARGIN_S, "the fence")
    event = session.of(Disconnected)[-1]
    assert isinstance(event, Disconnected)
    return event


async def test_a_whatsmeow_worker_whose_api_process_is_paused_fences_itself(
    edge: Path, tmp_path: Path
) -> None:
    """SIGSTOP of a real API process (`silent_owner`): its worker stops Go's client
    within the fence's time and connects nothing while the owner stays paused; the owner,
    running again, reads why, and its connect brings the session back."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.engines.silent_owner",
        str(FENCE_S),
        str(tmp_path / "whatsmeow"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert owner.stdin is not None
    assert owner.stdout is not None
    stdout = owner.stdout

    async def next_of(kind: str) -> str:
        while line := (await asyncio.wait_for(stdout.readline(), 30)).decode():
            if line.startswith(kind):
                return line
        raise AssertionError(f"the API process ended before {kind}")

    def edge_lines() -> list[str]:
        return edge.read_text().splitlines()

    try:
        await next_of("Connected")
        # Heartbeats keep a healthy session untouched, for twice the fence's time.
        await asyncio.sleep(2 * FENCE_S)
        assert edge_lines() == ["connect s1"]

        os.kill(owner.pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            await wait_for(
                lambda: asyncio.sleep(0, edge_lines()),
                lambda lines: "stop s1" in lines,
                FENCE_S + MARGIN_S,
                "the worker stopping Go's client",
            )
            # The silence did it: the last heartbeat came about a third of the fence's
            # time before the pause at most (a busy loop may have sent it a bit earlier).
            assert time.monotonic() - paused > FENCE_S / 3
            await asyncio.sleep(FENCE_S)  # nothing connects by itself meanwhile
            assert edge_lines() == ["connect s1", "stop s1"]
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        line = await next_of("Disconnected")
        assert line.startswith("Disconnected fenced: the API process stopped answering"), line
        await next_of("Connected")  # the owner's connect un-fenced it
        assert edge_lines() == ["connect s1", "stop s1", "connect s1"]
    finally:
        owner.stdin.close()
        await asyncio.wait_for(owner.wait(), 30)


async def test_a_baileys_bridge_fences_itself_when_the_api_process_goes_silent(
    bridge_dir: Path, tmp_path: Path
) -> None:
    # A connection that is up, its TLS handshake unanswered: a dial still waiting for
    # the proxy's answer is not one Baileys can close (https-proxy-agent keeps it).
    silent = await SilentProxy(tunnel=True).start()
    engine = BridgeEngine(
        BAILEYS,
        NodeRuntime("node", bridge_dir),
        tmp_path / "bridge",
        sessions_per_worker=10,
        fence_after_s=FENCE_S,
    )
    session = Session("b1", proxy=silent.url)
    client: EngineClient = engine.client(session.context)

    async def dials() -> tuple[int, int]:
        return len(silent.requests), silent.ended

    try:
        await client.connect()
        await wait_for(dials, lambda d: d == (1, 0), 30, "Baileys' dial")
        # Heartbeats keep a healthy session untouched, for twice the fence's time.
        await asyncio.sleep(2 * FENCE_S)
        assert session.events == []
        assert await dials() == (1, 0)

        bridge = child_of(engine.shards, "b1")
        event = await fenced(session, bridge)
        assert event.reason.startswith("fenced: the API process stopped answering"), event
        await wait_for(dials, lambda d: d == (1, 1), 5, "the dial given up")
        assert session.saved is not None  # the creds Baileys made are kept
        # Nothing comes back by itself while the API process stays silent.
        await asyncio.sleep(FENCE_S)
        assert await dials() == (1, 1)
        assert len(session.events) == 1
        assert bridge.alive

        # The API process is back: its connect un-fences the session, on the same bridge.
        bridge.heartbeats_held = False
        await client.connect()
        await wait_for(dials, lambda d: d[0] == 2, 30, "a new dial")
        assert child_of(engine.shards, "b1") is bridge
    finally:
        await client.disconnect()
        await engine.close()
        await silent.close()


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_engine_processes_fence_after_half_a_lease_and_the_runtime_reconnects(
    app_factory: AppFactory, edge: Path
) -> None:
    async with app_factory.running(engine_type="whatsmeow", session_lease_s=3) as api:
        fences = {
            name: getattr(api.services.engines.get(name), "fence_after_s", None)
            for name in ("whatsmeow", "baileys", "webjs")
        }
        assert fences == {"whatsmeow": 1.5, "baileys": 1.5, "webjs": 1.5}
        session_id = await started(api)
        await api.wait_status(session_id, "ready", 30)
        worker = child_of(whatsmeow(api).shards, session_id)
        worker.heartbeats_held = True
        try:

            def was_fenced(session: dict[str, Any]) -> bool:
                return any(
                    str(change.get("reason")).startswith("fenced: ")
                    for change in session["statusHistory"]
                )

            await wait_for(lambda: api.session(session_id), was_fenced, 1.5 + MARGIN_S, "fenced")
        finally:
            worker.heartbeats_held = False
        # The runtime took it as a lost connection: reconnected, on the same worker.
        await api.wait_status(session_id, "ready", 30)
        assert child_of(whatsmeow(api).shards, session_id) is worker


def test_the_lease_is_15_s_unless_set_and_never_under_3_s() -> None:
    assert Settings(_env_file=None).session_lease_s == 15  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="session_lease_s"):
        Settings(_env_file=None, session_lease_s=2.5)  # type: ignore[call-arg]
