"""Baileys' auth state as the bridge reports it: merged in place and saved by a task of
its own, the latest state at a time, so a burst of key updates is one write and the
bridge's frames never wait for the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from openwa.engines.base import AuthNotOurs, EngineEvent, SessionContext
from openwa.engines.bridge.engine import BAILEYS, BridgeClient, BridgeEngine
from openwa.engines.bridge.install import NodeRuntime


class SlowStore:
    """An auth store whose writes take a while, counting them."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None
        self.writes = 0

    async def load(self) -> dict[str, Any] | None:
        return self.saved

    async def save(self, data: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)
        self.writes += 1
        self.saved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}

    async def clear(self) -> None:
        self.saved = None


async def test_a_burst_of_key_updates_is_merged_and_saved_once_it_settles(tmp_path: Path) -> None:
    engine = BridgeEngine(
        BAILEYS, NodeRuntime("node", tmp_path / "node"), tmp_path / "t", sessions_per_worker=1
    )
    store = SlowStore()

    async def emit(event: EngineEvent) -> None:
        return None

    client = engine.client(SessionContext("s1", store, emit))
    assert isinstance(client, BridgeClient)
    await client.on_frame({"kind": "auth", "creds": {"me": {"id": "1@s.whatsapp.net"}}})
    for n in range(50):
        await client.on_frame({"kind": "auth", "keys": {"session": {f"k{n}": {"n": n}}}})
    assert store.writes == 0  # the frames went on without waiting for a write
    await client.on_frame({"kind": "auth", "keys": {"session": {"k0": None}}})  # a deletion
    await client.disconnect()  # waits for what was reported to be saved
    assert store.saved is not None
    assert store.saved["creds"] == {"me": {"id": "1@s.whatsapp.net"}}
    assert set(store.saved["keys"]["session"]) == {f"k{n}" for n in range(1, 50)}
    assert store.writes < 10


async def test_the_session_counts_as_linked_only_once_its_creds_are_saved(
    tmp_path: Path,
) -> None:
    """Right after a scan Baileys reports the new device's creds, then the connection
    open: `Authenticated` and `Connected` waited for nothing, so a kill in between lost
    the creds and the next start showed a QR again."""
    engine = BridgeEngine(
        BAILEYS, NodeRuntime("node", tmp_path / "node"), tmp_path / "t", sessions_per_worker=1
    )
    store = SlowStore()
    seen: list[tuple[str, bool]] = []

    async def emit(event: EngineEvent) -> None:
        seen.append((type(event).__name__, store.saved is not None))

    client = engine.client(SessionContext("s1", store, emit))
    assert isinstance(client, BridgeClient)
    await client.on_frame({"kind": "auth", "creds": {"me": {"id": "1@s.whatsapp.net"}}})
    await client.on_frame(
        {"kind": "event", "name": "connection.update", "data": {"connection": "open"}}
    )
    assert ("Authenticated", True) in seen
    assert ("Connected", True) in seen
    assert all(saved for _, saved in seen)
    await client.disconnect()


class NotOursStore(SlowStore):
    """The store of a client whose session is no longer its own (a cluster's lease
    gone, or a newer client of it here): every write is refused."""

    async def save(self, data: dict[str, Any]) -> None:
        self.writes += 1
        raise AuthNotOurs("owned elsewhere")


async def test_a_write_refused_as_not_ours_is_not_tried_again(tmp_path: Path) -> None:
    """Trying again cannot help: a saver that kept trying every second held up the
    client's stop, and with it the ownership loop that stops it (every other lease of
    the instance then lapsed)."""
    engine = BridgeEngine(
        BAILEYS, NodeRuntime("node", tmp_path / "node"), tmp_path / "t", sessions_per_worker=1
    )
    store = NotOursStore()

    async def emit(event: EngineEvent) -> None:
        return None

    async def request(op: str, session: str, timeout: float = 0, **args: Any) -> Any:
        return {}

    engine.request = request  # type: ignore[method-assign]
    client = engine.client(SessionContext("s1", store, emit))
    await client.on_frame({"kind": "auth", "keys": {"session": {"k": {"n": 1}}}})  # type: ignore[attr-defined]
    await asyncio.wait_for(client.disconnect(), 5)
    assert store.writes == 1
