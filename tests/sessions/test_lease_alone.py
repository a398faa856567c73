"""One instance alone keeps its sessions when their leases are not as it wrote them.

The instance lock says no other instance runs on the database, so a lease row that went
missing or moved went with the database's own state: a failover to a replica that had
not yet received the last commits (the lease of a session started just before), a backup
restored under a running server. Dropping the session then (as a member of a cluster
must, since another may have taken it over) left it not running while it showed
`ready`, with nothing to start it again until the server restarted, and its queued
reports dropped.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy import delete, select, text

from openwa.db.instance_lock import AdvisoryLock, instance_lock
from openwa.db.models import SessionLeaseRow
from tests.fixtures.app import Api
from tests.fixtures.databases import terminate_backend
from tests.messages.support import plus, ready_pair, send_text, wait_sent


async def lose_the_lease(api: Api, session_id: str) -> None:
    """The lease row goes, as with the database's state; then a renewal is made."""
    async with api.services.db() as db, db.begin():
        await db.execute(delete(SessionLeaseRow).where(SessionLeaseRow.session_id == session_id))
    ownership = api.services.ownership
    ownership._last_renewal = -math.inf  # a renewal is due
    await ownership.keep()


async def test_a_lease_gone_with_the_databases_state_is_taken_again(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await lose_the_lease(api, alice["id"])
    ownership = api.services.ownership
    assert api.services.runtime.is_running(alice["id"])
    assert ownership.holds(alice["id"])
    async with api.services.db() as db:
        owner = await db.scalar(
            select(SessionLeaseRow.owner).where(SessionLeaseRow.session_id == alice["id"])
        )
    assert owner == ownership.instance_id
    sent = await send_text(api, alice["id"], plus(bob), "still here")
    await wait_sent(api, alice["id"], sent["id"])


async def test_a_lease_is_not_taken_again_while_another_instance_holds_the_lock(
    api: Api, database_kind: str
) -> None:
    """A restart of PostgreSQL ends the instance lock's connection too; if another lone
    instance took the lock meanwhile, the lease may be its own: the session is dropped
    here, as before."""
    if database_kind != "postgres":
        pytest.skip("SQLite's lock is a flock, which ends only with its process")
    alice, _ = await ready_pair(api)
    lock = api.services.ownership.alone_lock
    assert isinstance(lock, AdvisoryLock)
    assert lock._conn is not None
    pid = await lock._conn.scalar(text("SELECT pg_backend_pid()"))
    await terminate_backend(pid)
    other = instance_lock(api.settings.resolved_database_url)
    await other.acquire()
    try:
        await lose_the_lease(api, alice["id"])
        assert not api.services.runtime.is_running(alice["id"])
    finally:
        await other.release()
