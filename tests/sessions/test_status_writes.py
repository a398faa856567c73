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


async def ready_again(api: Api, session_id: str) -> None:
    """The session `ready` again, in its row and to the send worker."""
    await api.wait_status(session_id, "ready", 20)
    await wait_for(
        lambda: asyncio.sleep(0, api.services.runtime.ready_sessions()),
        lambda ready: session_id in ready,
        20,
        "the session ready to send",
    )


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
    await ready_again(api, session["id"])


async def test_a_ready_write_put_off_for_a_config_change_is_written_after_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that waits for the session's lock (here a config change) goes first; the
    `ready` write is tried again after it [review: it was given up, and the session
    stayed `authenticated`]."""
    session = await ready_session(api, "flaky")
    runtime = api.services.runtime
    records = runtime._records
    real = records.ready
    away = asyncio.Event()
    away.set()
    tries: list[int] = []

    async def refused_while_away(*args: Any, **kwargs: Any) -> Any:
        tries.append(1)
        if away.is_set():
            raise ConnectionResetError("the database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(records, "ready", refused_while_away)
    await api.request("POST", "/api/sessions/flaky/mock/disconnect", json={"reason": "blip"})
    await wait_for(lambda: asyncio.sleep(0, len(tries)), bool, 20, "the ready write refused")
    patched = await api.request(
        "PATCH", "/api/sessions/flaky", json={"config": {"metadata": {"team": "a"}}}
    )
    assert patched.status_code == 200, patched.text
    away.clear()
    await ready_again(api, session["id"])
