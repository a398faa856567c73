"""Fixtures of the event tests: two linked mock sessions with a few events each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.db.engine import create_engine
from tests.events.support import page_all
from tests.fixtures.app import Api, wait_for

METADATA_A = {"team": "alpha", "region": "eu"}
METADATA_B = {"team": "beta"}


@dataclass
class Pair:
    """Sessions A and B (ready, with metadata), and the ids of the messages they exchanged."""

    a: dict[str, Any]
    b: dict[str, Any]
    inbound_a: list[str]
    inbound_b: list[str]
    a_to_b: str


async def make_pair(api: Api) -> Pair:
    a = await api.create_session("alpha", engine="mock", config={"metadata": METADATA_A})
    b = await api.create_session("beta", engine="mock", config={"metadata": METADATA_B})
    a = await api.wait_status(a["id"], "ready")
    b = await api.wait_status(b["id"], "ready")
    inbound_a: list[str] = []
    inbound_b: list[str] = []
    for session, ids in ((a, inbound_a), (b, inbound_b)):
        for n in range(2):
            response = await api.request(
                "POST",
                f"/api/sessions/{session['id']}/mock/inbound",
                json={"from": "+1 555 0100 200", "text": f"hello {session['name']} {n}"},
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["data"]["id"])
    response = await api.request(
        "POST",
        f"/api/sessions/{a['id']}/messages/text",
        json={"chatId": b["phoneNumber"], "text": "from alpha to beta"},
    )
    assert response.status_code == 202, response.text
    a_to_b: str = response.json()["data"]["id"]

    def settled(events: list[dict[str, Any]]) -> bool:
        received = {e["data"].get("id") for e in events if e["event"] == "message.received"}
        read = {
            e["data"]["id"]
            for e in events
            if e["event"] == "message.ack" and e["data"].get("status") == "read"
        }
        return received >= {*inbound_a, *inbound_b, a_to_b} and a_to_b in read

    await wait_for(lambda: page_all(api), settled, 15.0, "the pair's events")
    return Pair(a=a, b=b, inbound_a=inbound_a, inbound_b=inbound_b, a_to_b=a_to_b)


@pytest.fixture
async def stream_engine(api: Api) -> AsyncIterator[AsyncEngine]:
    """An engine of the stream's own, so a hook on it sees only the stream's statements."""
    engine = create_engine(api.settings.resolved_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def pair(api: Api) -> Pair:
    return await make_pair(api)
