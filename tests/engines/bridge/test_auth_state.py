"""Baileys' auth state as the bridge reports it: merged in place and saved by a task of
its own, the latest state at a time, so a burst of key updates is one write and the
bridge's frames never wait for the database; each write, once committed, is told to the
bridge (`auth_saved`), whose key changes wait for it."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

import openwa.engines.bridge.engine as engine_module
from openwa.engines.base import AuthNotOurs, EngineEvent, SessionContext
from openwa.engines.bridge.engine import BAILEYS, BridgeClient, BridgeEngine
from openwa.engines.bridge.install import NodeRuntime
from tests.engines.proxies import SilentProxy
from tests.fixtures.app import wait_for


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


class GatedStore(SlowStore):
    """An auth store whose writes wait until the test lets them through (a database
    that is slow or down), failing the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = 0
        self.failures = failures

    async def save(self, data: dict[str, Any]) -> None:
        self.started += 1
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is down")
        self.writes += 1
        self.saved = copy.deepcopy(data)


class Told:
    """The `auth_saved` words the engine sends the bridge, each with the state that was
    saved when it went."""

    def __init__(self, store: SlowStore) -> None:
        self.store = store
        self.words: list[tuple[str, int, dict[str, Any] | None]] = []

    async def request(self, op: str, session: str, timeout: float = 0, **args: Any) -> Any:
        if op == "auth_saved":  # not `stop`, say
            self.words.append((args["epoch"], args["seq"], copy.deepcopy(self.store.saved)))
        return {}


def _client(
    tmp_path: Path, store: SlowStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[BridgeClient, Told]:
    engine = BridgeEngine(
        BAILEYS, NodeRuntime("node", tmp_path / "node"), tmp_path / "t", sessions_per_worker=1
    )
    told = Told(store)
    monkeypatch.setattr(engine, "request", told.request)

    async def emit(event: EngineEvent) -> None:
        return None

    client = engine.client(SessionContext("s1", store, emit))
    assert isinstance(client, BridgeClient)
    return client, told


def _keys(seq: int, epoch: str = "e1") -> dict[str, Any]:
    return {
        "kind": "auth",
        "keys": {"session": {f"k{seq}": {"n": seq}}},
        "epoch": epoch,
        "seq": seq,
    }


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_key_change_is_told_saved_only_once_a_committed_write_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bridge's key store holds Baileys back (the message unacknowledged, the
    pre-keys not uploaded) until told: the word must not come before the write."""
    store = GatedStore()
    client, told = _client(tmp_path, store, monkeypatch)
    await client.on_frame(_keys(1))
    await asyncio.sleep(0.1)
    assert store.started == 1
    assert told.words == []  # the write is under way, not done
    store.gate.set()
    await client.disconnect()  # waits for the write
    await _settle()
    assert [(epoch, seq) for epoch, seq, _ in told.words] == [("e1", 1)]
    _, _, saved = told.words[0]
    assert saved is not None
    assert saved["keys"]["session"] == {"k1": {"n": 1}}


async def test_frames_merged_during_a_write_are_told_saved_together_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = GatedStore()
    client, told = _client(tmp_path, store, monkeypatch)
    await client.on_frame(_keys(1))
    await asyncio.sleep(0.05)  # the first write has begun
    for seq in range(2, 51):
        await client.on_frame(_keys(seq))
    # a frame of the adapter before (a session started again): its own word
    await client.on_frame(_keys(7, epoch="e0"))
    store.gate.set()
    await client.disconnect()
    await _settle()
    assert store.writes == 2
    words = sorted((epoch, seq) for epoch, seq, _ in told.words)
    assert words == [("e0", 7), ("e1", 1), ("e1", 50)]
    for epoch, seq, saved in told.words:
        assert saved is not None
        if epoch == "e1":
            assert {f"k{n}" for n in range(1, seq + 1)} <= set(saved["keys"]["session"])


async def test_a_write_that_fails_tells_nothing_until_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database down: the bridge hears nothing, and its key change fails after its
    bounded wait (lib/acks.js); a write that succeeds later still tells it."""
    store = GatedStore(failures=2)
    client, told = _client(tmp_path, store, monkeypatch)
    store.gate.set()
    await client.on_frame(_keys(1))
    await wait_for(lambda: asyncio.sleep(0, store.started), lambda n: n >= 2, 5, "a retry")
    assert told.words == []
    await client.on_frame(_keys(2))
    await client.disconnect()
    await _settle()
    assert store.writes == 1
    assert [(epoch, seq) for epoch, seq, _ in told.words] == [("e1", 2)]


class NotOursStore(SlowStore):
    """The store of a client whose session is no longer its own (a cluster's lease
    gone, or a newer client of it here): every write is refused."""

    async def save(self, data: dict[str, Any]) -> None:
        self.writes += 1
        raise AuthNotOurs("owned elsewhere")


async def test_a_write_refused_as_not_ours_is_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trying again cannot help: a saver that kept trying every second held up the
    client's stop, and with it the ownership loop that stops it (every other lease of
    the instance then lapsed)."""
    store = NotOursStore()
    client, told = _client(tmp_path, store, monkeypatch)
    await client.on_frame(_keys(1))
    await asyncio.wait_for(client.disconnect(), 5)
    assert store.writes == 1
    assert told.words == []


async def test_a_stop_waits_for_a_save_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database down: the stop goes on without the save (which keeps trying)."""
    monkeypatch.setattr(engine_module, "_STOP_SAVE_WAIT_S", 0.2)
    store = GatedStore(failures=1)
    client, _told = _client(tmp_path, store, monkeypatch)
    await client.on_frame(_keys(1))
    await asyncio.wait_for(client.disconnect(), 5)
    assert store.writes == 0
    store.gate.set()  # the database back: the save still goes through
    await wait_for(lambda: asyncio.sleep(0, store.writes), lambda n: n == 1, 5, "the save")


async def test_the_real_bridge_dials_only_once_its_pre_keys_are_saved(
    bridge_dir: Path, tmp_path: Path
) -> None:
    """Baileys uploads pre-keys as soon as it logs in, before its own write of them: the
    bridge makes them first, and starts the socket only once we saved them."""
    silent = await SilentProxy().start()
    engine = BridgeEngine(
        BAILEYS, NodeRuntime("node", bridge_dir), tmp_path / "bridge", sessions_per_worker=1
    )
    store = GatedStore()

    async def emit(event: EngineEvent) -> None:
        return None

    client = engine.client(SessionContext("b1", store, emit, {"proxy": silent.url}))

    async def writes() -> int:
        return store.started

    try:
        connecting = asyncio.create_task(client.connect())
        # The new device's creds came (its start is under way), their write held. The
        # bridge answers a start in the same turn as it sends them, unless it waits.
        await wait_for(writes, bool, 30, "the creds")
        await asyncio.sleep(1.0)
        assert not connecting.done()  # the bridge's start waits for the write
        assert silent.requests == []  # and Baileys has not dialled
        store.gate.set()
        await asyncio.wait_for(connecting, 20)
        assert store.saved is not None
        creds, pre_keys = store.saved["creds"], store.saved["keys"]["pre-key"]
        assert sorted(map(int, pre_keys)) == list(range(1, 61))
        assert (creds["firstUnuploadedPreKeyId"], creds["nextPreKeyId"]) == (1, 61)
        await wait_for(lambda: asyncio.sleep(0, silent.requests), bool, 30, "Baileys' dial")
    finally:
        store.gate.set()  # a failed test must not leave the disconnect's flush waiting
        await client.disconnect()
        await engine.close()
        await silent.close()
