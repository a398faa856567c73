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

from sqlalchemy import delete, select

from openwa.db.models import SessionLeaseRow
from tests.fixtures.app import Api
from tests.messages.support import plus, ready_pair, send_text, wait_sent


async def test_a_lease_gone_with_the_databases_state_is_taken_again(api: Api) -> None:
    alice, bob = await ready_pair(api)
    async with api.services.db() as db, db.begin():
        await db.execute(delete(SessionLeaseRow).where(SessionLeaseRow.session_id == alice["id"]))
    ownership = api.services.ownership
    ownership._last_renewal = -math.inf  # a renewal is due
    await ownership.keep()
    assert api.services.runtime.is_running(alice["id"])
    assert ownership.holds(alice["id"])
    async with api.services.db() as db:
        owner = await db.scalar(
            select(SessionLeaseRow.owner).where(SessionLeaseRow.session_id == alice["id"])
        )
    assert owner == ownership.instance_id
    sent = await send_text(api, alice["id"], plus(bob), "still here")
    await wait_sent(api, alice["id"], sent["id"])
