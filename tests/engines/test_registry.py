"""A deleted session is forgotten by every engine of every instance: the session
directory sees the row go (on the instance that deleted it, or at its next look on any
other) and the registry has each engine drop what it keeps for it. An instance that ran
the session before it moved kept its place in a worker shard, and the worker's client,
for the rest of its life."""

from __future__ import annotations

from typing import Any, cast

import pytest

from openwa.engines.base import Engine
from openwa.engines.registry import EngineRegistry
from tests.fixtures.app import Api


class _Keeping:
    """An engine that records what it is asked to forget (or fails to)."""

    def __init__(self, name: str, fails: bool = False) -> None:
        self.name = name
        self.fails = fails
        self.forgotten: list[tuple[str, Any]] = []

    async def forget(self, session_id: str, auth: dict[str, Any] | None) -> None:
        self.forgotten.append((session_id, auth))
        if self.fails:
            raise RuntimeError("its worker is gone")

    async def close(self) -> None:
        return None


async def test_every_engine_forgets_a_deleted_session_one_failing_or_not() -> None:
    engines = [_Keeping("whatsmeow", fails=True), _Keeping("baileys")]
    registry = EngineRegistry(cast(list[Engine], engines), "whatsmeow")
    registry.forget_deleted("ses_gone")
    await registry.settled()
    assert [e.forgotten for e in engines] == [[("ses_gone", None)], [("ses_gone", None)]]
    await registry.close()


async def test_the_app_forgets_deleted_sessions_in_its_engines(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = api.services
    mock = services.engines.get("mock")
    forgotten: list[tuple[str, Any]] = []
    real_forget = mock.forget

    async def recording(session_id: str, auth: dict[str, Any] | None) -> None:
        forgotten.append((session_id, auth))
        await real_forget(session_id, auth)

    monkeypatch.setattr(mock, "forget", recording)
    session = await api.create_session("leaving", engine="mock")
    assert (await api.request("DELETE", f"/api/sessions/{session['id']}")).status_code == 200
    await services.engines.settled()
    assert (session["id"], None) in forgotten
