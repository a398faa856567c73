"""One instance per database: a second server on it is refused, the first keeps serving.

Two instances on one database would each run every session (issue 10); until several
are supported, the instance lock (src/openwa/db/instance_lock.py) keeps the second out.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from openwa.db.engine import sqlite_path
from openwa.db.instance_lock import AdvisoryLock, InstanceLocked, instance_lock
from tests.e2e.support import log_problems, wait_status, wait_until
from tests.fixtures.app import AppFactory
from tests.fixtures.databases import (
    advisory_lock_holders,
    create_pg_database,
    drop_pg_database,
    pg_url,
    require_postgres,
    terminate_backend,
)
from tests.fixtures.server import ServerProcess

REFUSAL = "another OpenWA instance is using the database"


def _database_name(database_url: str) -> str:
    path = sqlite_path(database_url)
    if path is not None:
        return str(path)
    name = make_url(database_url).database
    assert name is not None
    return name


def _assert_refused(server: ServerProcess, database_url: str) -> None:
    """The server exits by itself, non-zero, with one line naming the database."""
    server.launch()
    code = server.wait_exit()
    log = server.log()
    assert code == 3, log
    (line,) = [line for line in log.splitlines() if REFUSAL in line]
    assert _database_name(database_url) in line, line
    assert "Traceback" not in log, log


def _wait_unlocked(database_kind: str, database_url: str) -> None:
    """PostgreSQL drops a dead client's locks when its backend notices; wait for that."""
    if database_kind != "postgres":
        return  # the kernel drops a dead process's flock before wait() returns
    name = make_url(database_url).database
    assert name is not None
    wait_until(
        lambda: asyncio.run(advisory_lock_holders(name)),
        lambda holders: holders == [],
        what="the advisory lock to be dropped",
    )


@pytest.mark.e2e
def test_a_second_server_is_refused_and_the_first_keeps_serving(
    server_factory: Callable[..., ServerProcess], database_url: str
) -> None:
    first = server_factory()
    first.start()
    with first.client() as admin:
        assert admin.post("/api/sessions", json={"name": "kept"}).status_code == 201
        wait_status(admin, "kept", "ready")

    second = server_factory()
    _assert_refused(second, database_url)

    with first.client() as admin:
        assert admin.get("/health/ready").status_code == 200
        assert admin.post("/api/sessions", json={"name": "after"}).status_code == 201
        wait_status(admin, "after", "ready")
        assert wait_status(admin, "kept", "ready")["status"] == "ready"
    assert log_problems(first.log()) == [], first.log()

    # Once the first has stopped, the next one starts and restores the sessions.
    assert first.stop(signal.SIGTERM) == 0
    second.start()
    with second.client() as admin:
        wait_status(admin, "kept", "ready")
        wait_status(admin, "after", "ready")


@pytest.mark.e2e
def test_a_killed_server_frees_the_database(
    server_factory: Callable[..., ServerProcess], database_url: str, database_kind: str
) -> None:
    first = server_factory()
    first.start()
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    _wait_unlocked(database_kind, database_url)

    second = server_factory()
    second.start()
    # It holds the database in turn.
    _assert_refused(server_factory(), database_url)


async def test_a_second_app_in_one_process_is_refused(app_factory: AppFactory) -> None:
    async with app_factory.running() as first:
        with pytest.raises(InstanceLocked) as refused:
            await app_factory.start()
        assert _database_name(app_factory.database_url) in refused.value.database
        assert (await first.request("GET", "/health/ready", key=None)).status_code == 200
    async with app_factory.running() as again:  # released at shutdown
        assert (await again.request("GET", "/health/ready", key=None)).status_code == 200


async def test_memory_sqlite_needs_no_lock(tmp_path: Path) -> None:
    url = "sqlite+aiosqlite:///:memory:"
    locks = [instance_lock(url), instance_lock(url)]
    for lock in locks:
        await lock.acquire()
    for lock in locks:
        await lock.release()


async def test_release_lets_the_next_one_in_and_is_safe_twice(database_url: str) -> None:
    first, second = instance_lock(database_url), instance_lock(database_url)
    await first.acquire()
    await first.acquire()  # already held: nothing more
    with pytest.raises(InstanceLocked):
        await second.acquire()
    await first.release()
    await first.release()
    await second.acquire()
    with pytest.raises(InstanceLocked):
        await first.acquire()
    await second.release()


@pytest.fixture
def pg_database() -> Iterator[str]:
    require_postgres()
    name = create_pg_database()
    try:
        yield name
    finally:
        drop_pg_database(name)


async def test_a_lost_lock_connection_is_taken_again(pg_database: str) -> None:
    # A PostgreSQL restart or a dropped network ends the lock's connection, and the
    # lock with it; the keep-alive notices on its next use and takes the lock again.
    url = pg_url(pg_database)
    lock = instance_lock(url)
    assert isinstance(lock, AdvisoryLock)
    await lock.acquire()
    try:
        (holder,) = await advisory_lock_holders(pg_database)
        await terminate_backend(holder)
        assert await advisory_lock_holders(pg_database) == []
        await lock.check()  # what the keep-alive runs every KEEPALIVE_S
        (again,) = await advisory_lock_holders(pg_database)
        assert again != holder
        with pytest.raises(InstanceLocked):
            await instance_lock(url).acquire()
    finally:
        await lock.release()
    assert await advisory_lock_holders(pg_database) == []


async def test_a_lock_lost_to_another_instance_is_reported(pg_database: str) -> None:
    url = pg_url(pg_database)
    lock = instance_lock(url)
    assert isinstance(lock, AdvisoryLock)
    await lock.acquire()
    other = instance_lock(url)
    try:
        (holder,) = await advisory_lock_holders(pg_database)
        await terminate_backend(holder)
        await other.acquire()  # started while the first had lost its connection
        with pytest.raises(InstanceLocked):
            await lock.check()
    finally:
        await lock.release()
        await other.release()
