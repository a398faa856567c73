"""The database host goes silent: no reset, no answer, as when a failover moves its
address or the network starts dropping packets. Calls must not wait for the kernel to
give up (many minutes), and once the database answers again (new connections reach it)
the server must carry on by itself: the silent connections leave the pool.

By default the sockets themselves end such connections (`db/dead_peer.py`): keep-alive
probes and TCP_USER_TIMEOUT, which only the host's silence trips, never a slow
statement. Dropping the host's packets needs rights over the network this machine's
tests do not have, so the first test checks that every connection carries those
options. The second goes through a relay on loopback (`tests/fixtures/blackhole.py`)
whose connections so far go silent on a word while new ones are relayed as before (as
they reach the new primary after a failover); the relay's own kernel acknowledges what
it is sent, so there it is the statement bound (`DATABASE_COMMAND_TIMEOUT_S`, off
unless set) that ends the wait.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from openwa.db.dead_peer import asyncpg_socket
from tests.fixtures.app import AppFactory, make_settings, wait_for
from tests.fixtures.blackhole import BlackholeRelay
from tests.fixtures.databases import PG_PORT
from tests.messages.support import data_of, plus, ready_pair, wait_sent

pytestmark = pytest.mark.postgres


async def test_every_connection_to_the_database_ends_when_its_host_goes_silent(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        AppFactory(postgres_url, tmp_path / "data").running(database_tcp_timeout_s=30) as api,
        api.services.db_engine.connect() as conn,
    ):
        fairy = await conn.get_raw_connection()
        sock = asyncpg_socket(fairy.dbapi_connection)
        options = {
            name: sock.getsockopt(level, getattr(socket, name))
            for level, name in (
                (socket.SOL_SOCKET, "SO_KEEPALIVE"),
                (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT"),
                (socket.IPPROTO_TCP, "TCP_KEEPIDLE"),
                (socket.IPPROTO_TCP, "TCP_KEEPINTVL"),
                (socket.IPPROTO_TCP, "TCP_KEEPCNT"),
            )
        }
    assert options["SO_KEEPALIVE"] == 1
    assert options["TCP_USER_TIMEOUT"] == 30_000
    # An idle connection is probed well within the bound (Linux then ends it at the
    # first probe past TCP_USER_TIMEOUT, whatever TCP_KEEPCNT says).
    assert options["TCP_KEEPIDLE"] + options["TCP_KEEPINTVL"] < 30


async def test_a_silent_database_holds_calls_no_longer_than_the_statement_bound(
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


@pytest.mark.parametrize("value", [0.5, 4])
def test_a_tcp_bound_below_retransmits_is_refused(value: float, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_TCP_TIMEOUT_S"):
        make_settings("sqlite+aiosqlite://", tmp_path, database_tcp_timeout_s=value)
