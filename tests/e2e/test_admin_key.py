"""The first admin key when `API_KEY` is not set: generated once, printed once."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from openwa.app import build_services
from openwa.db import migrate
from openwa.db.engine import create_engine
from openwa.db.unit_of_work import unit_of_work
from openwa.services import Services
from tests.e2e.support import UnkeyedServer, generated_keys, log_problems, wait_until
from tests.fixtures.app import make_settings
from tests.fixtures.server import ServerProcess

pytestmark = pytest.mark.e2e


def _keys(server: ServerProcess, key: str) -> list[dict[str, Any]]:
    with server.client(key) as client:
        response = client.get("/api/keys", params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    assert response.json()["pagination"]["total"] == len(items)
    return items


def _only_generated_admin(items: list[dict[str, Any]], key: str) -> None:
    assert len(items) == 1, items
    (only,) = items
    assert only["role"] == "admin"
    assert only["source"] == "generated"
    assert only["sessions"] is None
    assert key.startswith(only["prefix"])
    assert "key" not in only  # never shown again
    assert "keyHash" not in only


def test_generated_admin_key_is_printed_once_and_works(
    unkeyed_server_factory: Callable[..., UnkeyedServer],
) -> None:
    server = unkeyed_server_factory()
    assert "API_KEY" not in server.env()
    server.start()

    printed = generated_keys(server.log())
    assert len(printed) == 1, server.log()
    key = printed[0]
    _only_generated_admin(_keys(server, key), key)
    with server.client(key) as admin:  # admin: it may make keys
        response = admin.post("/api/keys", json={"name": "ops", "role": "operator"})
        assert response.status_code == 201, response.text
    with server.client(None) as anonymous:
        assert anonymous.get("/api/keys").status_code == 401
    with server.client(key + "x") as wrong:
        assert wrong.get("/api/keys").status_code == 401

    assert server.stop(signal.SIGTERM) != -signal.SIGKILL
    server.start()
    log = server.log()
    assert generated_keys(log) == [key], "a second start printed a key again"
    items = _keys(server, key)
    assert sorted(i["source"] for i in items) == ["api", "generated"]
    assert log_problems(log) == []


def test_an_empty_api_key_counts_as_unset(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # `API_KEY=` as a copied .env template leaves it: a key is generated, not refused.
    server = server_factory(API_KEY="")
    assert server.env()["API_KEY"] == ""
    server.start()
    printed = generated_keys(server.log())
    assert len(printed) == 1, server.log()
    _only_generated_admin(_keys(server, printed[0]), printed[0])


def test_two_servers_started_together_make_one_admin_key(
    unkeyed_server_factory: Callable[..., UnkeyedServer], empty_database_url: str
) -> None:
    # One database serves one instance: of two started together on an empty database,
    # one migrates and makes the key, the other is refused before touching anything.
    servers = [unkeyed_server_factory(), unkeyed_server_factory()]
    assert servers[0].data_dir == servers[1].data_dir
    barrier = threading.Barrier(len(servers))

    def launch(server: UnkeyedServer) -> None:
        barrier.wait(timeout=10)
        server.launch()

    threads = [threading.Thread(target=launch, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    def serving(server: UnkeyedServer) -> bool:
        try:
            return httpx.get(server.url + "/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def settled() -> list[str]:
        states = []
        for server in servers:
            assert server.process is not None
            if server.process.poll() is not None:
                states.append("exited")
            else:
                states.append("serving" if serving(server) else "starting")
        return states

    states = wait_until(settled, lambda s: sorted(s) == ["exited", "serving"], 60, "one to serve")
    winner = servers[states.index("serving")]
    loser = servers[states.index("exited")]
    assert loser.wait_exit() == 3, loser.log()
    assert "another OpenWA instance is using the database" in loser.log()
    assert generated_keys(loser.log()) == []
    assert log_problems(winner.log()) == [], winner.log()

    (key,) = generated_keys(winner.log())
    _only_generated_admin(_keys(winner, key), key)
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert _alembic_versions(empty_database_url) == [head]


async def test_upgrades_run_together_make_one_schema_and_one_admin_key(
    empty_database_url: str, tmp_path: Path
) -> None:
    # `openwa db upgrade` beside a starting server (and, later, several instances) run
    # the migration and the first-key bootstrap at once: both hold the migration lock.
    services = [
        build_services(make_settings(empty_database_url, tmp_path / "data", api_key=None))
        for _ in range(2)
    ]
    generated: list[str] = []

    async def upgrade(own: Services) -> None:
        async def bootstrap() -> None:
            async with unit_of_work(own.db) as db:
                key = await own.keys.bootstrap(db, None)
            if key:
                generated.append(key)

        await migrate.upgrade(own.db_engine, after=bootstrap)

    try:
        await asyncio.gather(*(upgrade(own) for own in services))
    finally:
        for own in services:
            await own.cache.close()
            await own.db_engine.dispose()
    assert len(generated) == 1, generated
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert await _alembic_versions_async(empty_database_url) == [head]


def _alembic_versions(database_url: str) -> list[str]:
    return asyncio.run(_alembic_versions_async(database_url))


async def _alembic_versions_async(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in result]
    finally:
        await engine.dispose()
