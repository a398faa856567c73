"""whatsmeow sessions spread over worker processes (shards), and the lock around
neonize's Go maps inside one worker: real workers, real neonize clients, their dials
ending at loopback proxies, one proxy per session so each CONNECT names its session."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from openwa.config import Settings
from openwa.engines.base import SendFailed
from openwa.engines.shards import ShardMap
from openwa.engines.whatsmeow.engine import WorkerGone, WorkerProcess
from openwa.engines.whatsmeow.load import WorkerLoad
from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.engines.whatsmeow_support import client_of, link, plant_device, started, whatsmeow
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.sessions.support import statuses

CONNECT = "CONNECT web.whatsapp.com:443 HTTP/1.1"
# neonize 0.5.2 without the lock: these rounds aborted the worker ("concurrent map
# writes" / "concurrent map read and map write", exit 134) in some runs (docs/engines.md).
STRESS_SESSIONS = 64
STRESS_ROUNDS = 4


# Shards do not depend on the database; resuming devices from PostgreSQL after a crash is
# `test_whatsmeow_edge.test_a_crashed_worker_is_replaced_and_its_sessions_reconnect`.
SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


@pytest.fixture
async def sharded(app_factory: AppFactory) -> AsyncIterator[Api]:
    async with app_factory.running(engine_type="whatsmeow", whatsmeow_sessions_per_worker=2) as api:
        yield api


@pytest.fixture
async def proxies() -> AsyncIterator[list[SilentProxy]]:
    held = [await SilentProxy().start() for _ in range(3)]
    yield held
    for proxy in held:
        await proxy.close()


async def dials(proxy: SilentProxy) -> int:
    return len(proxy.requests)


async def pid_of(api: Api, session_id: str) -> int | None:
    return whatsmeow(api).worker_pid_of(session_id)


async def dialing(api: Api, proxy: SilentProxy) -> str:
    session_id = await started(api, proxy=proxy.url)
    await wait_for(lambda: dials(proxy), bool, 20, "the session's dial")
    return session_id


async def linked_device(api: Api, proxy: SilentProxy, phone: str) -> str:
    """A session linked (events), its device in whatsmeow's store, its dial held."""
    session_id = await dialing(api, proxy)
    await link(api, session_id, phone=phone)
    location = (await (await client_of(api, session_id)).describe())["location"]
    await plant_device(location, f"{phone}:7@s.whatsapp.net")
    return session_id


@SQLITE_ONLY
async def test_a_killed_worker_takes_down_only_its_own_sessions_which_resume_their_device(
    sharded: Api, proxies: list[SilentProxy]
) -> None:
    phones = ["15550100001", "15550100002", "15550100003"]
    ids = await asyncio.gather(
        *(linked_device(sharded, p, phone) for p, phone in zip(proxies, phones, strict=True))
    )
    pids = [await pid_of(sharded, session_id) for session_id in ids]
    assert None not in pids
    assert len(set(pids)) == 2  # two sessions per worker: three sessions, two workers
    (other,) = [n for n in range(3) if pids.count(pids[n]) == 1]
    victims = [n for n in range(3) if n != other]

    os.kill(pids[victims[0]], signal.SIGKILL)

    for n in victims:
        proxy = proxies[n]
        await wait_for(lambda proxy=proxy: dials(proxy), lambda k: k >= 2, 30, "a new CONNECT")
        assert set(proxy.requests) == {CONNECT}
        described = await (await client_of(sharded, ids[n])).describe()
        assert described["jid"] == f"{phones[n]}:7@s.whatsapp.net"  # the same device: no scan
        session = await sharded.session(ids[n])
        assert "qr_ready" not in statuses(session)
        assert session["phoneNumber"] == phones[n]
    replaced = {await pid_of(sharded, ids[n]) for n in victims}
    assert len(replaced) == 1
    assert replaced.isdisjoint({None, pids[victims[0]]})
    # The other worker kept its process, its session its connection attempt.
    assert await pid_of(sharded, ids[other]) == pids[other]
    assert proxies[other].requests == [CONNECT]
    survivor = await sharded.session(ids[other])
    assert survivor["status"] == "ready"
    assert "disconnected" not in statuses(survivor)


@SQLITE_ONLY
async def test_a_sealed_worker_restarts_a_retrying_session_alone_on_another(
    sharded: Api, proxies: list[SilentProxy], recorder: RecordingProxy
) -> None:
    engine = whatsmeow(sharded)
    engine.recycle_after = 1000  # only the report below decides
    # Nothing is really connected offline: the watch would recycle the sealed worker.
    engine.watch_s = 3600  # read when the first worker starts
    kept = await dialing(sharded, proxies[0])
    # Refused by its proxy: fails at once and retries, one more device store each time.
    retrying = await started(sharded, proxy=f"http://127.0.0.1:{recorder.port}")
    await wait_for(lambda: asyncio.sleep(0, len(recorder.requests)), bool, 20, "an attempt")
    first = await pid_of(sharded, kept)
    assert first is not None
    assert await pid_of(sharded, retrying) == first
    shard = engine.shards.of(kept)
    assert shard is not None
    # What the worker reports once its leaks reach the budget with a session connected.
    engine.after_connect(shard, WorkerLoad(attempts=1002, sessions=2, live=1))
    assert shard.sealed

    moved = await wait_for(
        lambda: pid_of(sharded, retrying), lambda p: p not in (None, first), 30, "moved"
    )
    seen = len(recorder.requests)
    await wait_for(
        lambda: asyncio.sleep(0, len(recorder.requests)), lambda n: n > seen, 20, "retry"
    )
    assert await pid_of(sharded, retrying) == moved
    assert await pid_of(sharded, kept) == first
    assert proxies[0].requests == [CONNECT]
    assert (await (await client_of(sharded, kept)).describe())["connecting"]


@SQLITE_ONLY
async def test_a_worker_over_its_memory_budget_is_recycled_and_its_sessions_reconnect(
    sharded: Api, proxies: list[SilentProxy]
) -> None:
    engine = whatsmeow(sharded)
    engine.watch_s = 0.1  # read when the first worker starts
    session_id = await dialing(sharded, proxies[0])
    first = await pid_of(sharded, session_id)
    engine.worker_max_mb = 1  # any worker is over it
    session = await wait_for(
        lambda: sharded.session(session_id),
        lambda s: "WHATSMEOW_WORKER_MAX_MB=1" in (s["lastError"] or ""),
        30,
        "recycled over its budget",
    )
    assert "over WHATSMEOW_WORKER_MAX_MB" in session["lastError"]
    engine.worker_max_mb = None
    await wait_for(lambda: dials(proxies[0]), lambda n: n >= 2, 30, "a new CONNECT")
    assert await pid_of(sharded, session_id) not in (None, first)


async def test_rounds_of_concurrent_connects_and_stops_leave_the_worker_running(
    tmp_path: Path, recorder: RecordingProxy
) -> None:
    """Each session connects (its attempt reaches the proxy and fails), then stops, for
    a fixed number of rounds, all sessions at once in one worker."""
    outcomes: dict[str, asyncio.Queue[str]] = {}
    exited = asyncio.Event()

    async def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("kind") == "event":
            outcomes[frame["session"]].put_nowait(frame["type"])

    async def on_exit() -> None:
        exited.set()

    worker = WorkerProcess(on_frame, on_exit)
    await worker.start("WARNING", 1 << 20, 75.0, tmp_path / "transfer", 10.0)
    proxy = f"http://127.0.0.1:{recorder.port}"

    async def connect(session_id: str, location: str) -> None:
        for _ in range(3):
            try:
                await worker.request(
                    "connect", session=session_id, location=location, jid=None, proxy=proxy
                )
                return
            except (
                SendFailed
            ):  # its previous stop still closing (5 s): retried, as the runtime does
                continue
        raise AssertionError(f"{session_id} could not connect again")

    async def rounds(session_id: str) -> int:
        outcomes[session_id] = asyncio.Queue()
        location = str(tmp_path / f"{session_id}.db")
        for done in range(STRESS_ROUNDS):
            try:
                await connect(session_id, location)
                await asyncio.wait_for(outcomes[session_id].get(), 60)
                await worker.request("close", session=session_id)
            except WorkerGone:
                return done
        return STRESS_ROUNDS

    try:
        finished = await asyncio.gather(*(rounds(f"s{n}") for n in range(STRESS_SESSIONS)))
        assert not exited.is_set(), "the worker aborted"
        assert finished == [STRESS_ROUNDS] * STRESS_SESSIONS
        assert (await worker.request("ping", timeout=10))["sessions"] == STRESS_SESSIONS
        assert len(recorder.requests) == STRESS_SESSIONS * STRESS_ROUNDS
    finally:
        await worker.stop()


def test_sessions_fill_a_shard_then_the_next_and_skip_a_sealed_one() -> None:
    shards = ShardMap(sessions_per_worker=2)
    placed = [shards.place(f"s{n}").number for n in range(5)]
    assert placed == [0, 0, 1, 1, 2]
    assert shards.place("s0").number == 0  # a session keeps its shard
    shards.drop("s1")
    shards.shards[0].sealed = True
    assert shards.place("s5").number == 2  # room on 0, but it takes no new attempts
    shards.shards[0].sealed = False
    assert shards.place("s6").number == 0
    assert WorkerLoad(attempts=13, sessions=2, live=1).leaked == 11


def test_the_shard_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHATSMEOW_WORKER_MAX_MB", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.whatsmeow_sessions_per_worker == 50
    assert settings.whatsmeow_worker_max_mb == 2048  # a budget by default
    monkeypatch.setenv("WHATSMEOW_WORKER_MAX_MB", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.whatsmeow_worker_max_mb is None  # turned off
    monkeypatch.setenv("WHATSMEOW_WORKER_MAX_MB", "512")
    monkeypatch.setenv("WHATSMEOW_SESSIONS_PER_WORKER", "2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.whatsmeow_sessions_per_worker, settings.whatsmeow_worker_max_mb) == (2, 512)
    monkeypatch.setenv("WHATSMEOW_SESSIONS_PER_WORKER", "0")
    with pytest.raises(ValidationError, match="whatsmeow_sessions_per_worker"):
        Settings(_env_file=None)  # type: ignore[call-arg]
