"""Engine processes fence themselves: a whatsmeow worker or a Node.js bridge that hears
nothing from its API process for `fence_after_s` drops its sessions' connections (auth
kept), reports each one `Disconnected` ("fenced: ..."), and does not reconnect until
told to; while heartbeats come, nothing happens. Real child processes, real adapters:
the whatsmeow worker with Go's client a stand-in at its edge (`standin_worker`), and the
bridge running Baileys, its dial held by a silent loopback proxy.

A paused API process cannot be played by SIGSTOP here (the test is that process): the
engine's child process holds its heartbeats (`heartbeats_held`), all else going on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.base import (
    Connected,
    Disconnected,
    EngineClient,
    EngineEvent,
    SessionContext,
)
from openwa.engines.bridge.engine import BAILEYS, BridgeEngine
from openwa.engines.bridge.install import NodeRuntime
from openwa.engines.children import ChildProcess
from openwa.engines.shards import ShardMap
from openwa.engines.whatsmeow.engine import WhatsmeowEngine
from openwa.engines.whatsmeow.store import DeviceStore
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import started, whatsmeow
from tests.fixtures.app import AppFactory, wait_for

FENCE_S = 1.0
# How late a fence may come on a loaded machine (timers, a busy loop, the frame's trip).
MARGIN_S = 2.0


class Session:
    """What the runtime gives an engine for one session: an auth store in memory, and
    the events the engine emits, kept in order."""

    def __init__(self, session_id: str, **config: Any) -> None:
        self.saved: dict[str, Any] | None = None
        self.events: list[EngineEvent] = []
        self.context = SessionContext(session_id, self, self.emit, config)

    async def load(self) -> dict[str, Any] | None:
        return self.saved

    async def save(self, data: dict[str, Any]) -> None:
        self.saved = data

    async def clear(self) -> None:
        self.saved = None

    async def emit(self, event: EngineEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[EngineEvent]) -> list[EngineEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    async def count(self, kind: type[EngineEvent], n: int, timeout: float, what: str) -> None:
        await wait_for(
            lambda: asyncio.sleep(0, len(self.of(kind))), lambda k: k >= n, timeout, what
        )


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


async def test_a_whatsmeow_worker_fences_itself_when_the_api_process_goes_silent(
    edge: Path, tmp_path: Path
) -> None:
    engine = WhatsmeowEngine(DeviceStore(tmp_path / "whatsmeow"), fence_after_s=FENCE_S)
    session = Session("s1")
    client: EngineClient = engine.client(session.context)

    def edge_lines() -> list[str]:
        return edge.read_text().splitlines()

    try:
        await client.connect()
        await session.count(Connected, 1, 30, "connected")
        # Heartbeats keep a healthy session untouched, for twice the fence's time.
        await asyncio.sleep(2 * FENCE_S)
        assert session.of(Disconnected) == []
        assert edge_lines() == ["connect s1"]

        worker = child_of(engine.shards, "s1")
        event = await fenced(session, worker)
        assert event.reason.startswith("fenced: the API process stopped answering"), event
        assert edge_lines() == ["connect s1", "stop s1"]  # Go's client stopped, not logged out
        # Nothing comes back by itself while the API process stays silent.
        await asyncio.sleep(FENCE_S)
        assert edge_lines() == ["connect s1", "stop s1"]
        assert isinstance(session.events[-1], Disconnected)
        assert worker.alive

        # The API process is back: its connect un-fences the session, on the same worker.
        worker.heartbeats_held = False
        await client.connect()
        await session.count(Connected, 2, 30, "connected again")
        assert edge_lines() == ["connect s1", "stop s1", "connect s1"]
        assert child_of(engine.shards, "s1") is worker
    finally:
        await client.disconnect()
        await engine.close()


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
