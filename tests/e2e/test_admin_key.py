"""The first admin key when `API_KEY` is not set: generated once, printed once."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from openwa.db import migrate
from openwa.db.engine import create_engine
from tests.e2e.support import UnkeyedServer, generated_keys, log_problems
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


def test_two_instances_started_together_make_one_admin_key(
    unkeyed_server_factory: Callable[..., UnkeyedServer], empty_database_url: str
) -> None:
    # An empty database: the two race for the schema upgrade as well as for the key.
    servers = [unkeyed_server_factory(), unkeyed_server_factory()]
    assert servers[0].port != servers[1].port
    assert servers[0].data_dir == servers[1].data_dir
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(servers))

    def start(server: UnkeyedServer) -> None:
        try:
            barrier.wait(timeout=10)
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [], errors

    for server in servers:
        assert httpx.get(server.url + "/health/ready", timeout=5).status_code == 200
        assert log_problems(server.log()) == [], server.log()

    printed = [generated_keys(s.log()) for s in servers]
    assert sorted(len(keys) for keys in printed) == [0, 1], printed
    key = next(k for keys in printed for k in keys)
    for server in servers:  # both see the same single key, whichever made it
        _only_generated_admin(_keys(server, key), key)

    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert asyncio.run(_alembic_versions(empty_database_url)) == [head]


async def _alembic_versions(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in result]
    finally:
        await engine.dispose()
