"""The database host goes silent: no reset, no answer, as when a failover moves its
address or the network starts dropping packets. Calls must not wait for the kernel to
give up (many minutes), and once the database answers again (new connections reach it)
the server must carry on by itself: the silent connections leave the pool.

The app reaches the machine's PostgreSQL through a relay on loopback
(`tests/fixtures/blackhole.py`) whose connections so far go silent on a word, while
new ones are relayed as before, as they reach the new primary after a failover.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.app import AppFactory, wait_for
from tests.fixtures.blackhole import BlackholeRelay
from tests.fixtures.databases import PG_PORT
from tests.messages.support import data_of, plus, ready_pair, wait_sent

pytestmark = pytest.mark.postgres


async def test_a_silent_database_holds_calls_no_longer_than_the_timeout(
    postgres_url: str, blackhole_relay: BlackholeRelay, tmp_path: Path
) -> None:
    url = postgres_url.replace(f":{PG_PORT}/", f":{blackhole_relay.port}/")
    factory = AppFactory(url, tmp_path / "data")
    async with factory.running(database_command_timeout_s=2, database_connect_timeout_s=2) as api:
        alice, bob = await ready_pair(api)
        path = f"/api/sessions/{alice['id']}/messages/text"
        blackhole_relay.silence()
        async with asyncio.timeout(60):  # the kernel would take many minutes
            answer = await wait_for(
                lambda: api.request("POST", path, json={"chatId": plus(bob), "text": "x"}),
                lambda r: r.status_code == 202,
                timeout=55,
                what="a send accepted on a connection that answers",
            )
        sent = data_of(answer, 202)
        await wait_sent(api, alice["id"], sent["id"], timeout=30)
