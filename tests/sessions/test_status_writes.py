"""A session's status write that the database refuses for a reason of the moment (a
restart, a failover, a busy spell) does not leave the session down: a failed
`reconnecting` write used to end the reconnect (the session stayed `disconnected` until
restarted by hand), and a failed `ready` write left a connected session `authenticated`,
its sends held, until its next disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.app import Api, wait_for
from tests.messages.support import ready_session


def refused_once(records: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the records' `name` write fail once, as a database that went away fails it;
    the list says when it has."""
    real = getattr(records, name)
    refused: list[str] = []

    async def once(*args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(name)
            raise ConnectionResetError("the database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(records, name, once)
    return refused


@pytest.mark.parametrize("write", ["reconnecting", "ready"])
async def test_a_status_write_refused_once_leaves_the_session_ready(
    api: Api, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    session = await ready_session(api, "flaky")
    runtime = api.services.runtime
    refused = refused_once(runtime._records, write, monkeypatch)
    response = await api.request(
        "POST", "/api/sessions/flaky/mock/disconnect", json={"reason": "blip"}
    )
    assert response.status_code == 200, response.text
    await wait_for(lambda: asyncio.sleep(0, refused), bool, 20, f"the {write} write refused")
    await api.wait_status("flaky", "ready", 20)
    await wait_for(
        lambda: asyncio.sleep(0, runtime.ready_sessions()),
        lambda ready: session["id"] in ready,
        20,
        "the session ready to send",
    )
