"""Retention and a webhook's queue: events past `EVENT_RETENTION_DAYS` go, but not those
a pending delivery still has to send (a webhook inactive, or its receiver down, longer
than the retention used to find its queue failed as "no longer exists", without a POST,
and the log emptied of it soon after); a delivery that ended is kept for the retention
from when it ended."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from openwa.db.models import DeliveryRow, EventRow
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.clock import utcnow
from tests.fixtures.app import Api
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    data_of,
    hooks_path,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)


async def _age_everything(api: Api, days: int) -> None:
    """Events and deliveries as if made `days` ago."""
    then = utcnow() - timedelta(days=days)
    async with unit_of_work(api.services.db) as db:
        await db.execute(update(EventRow).values(created_at=then))
        await db.execute(update(DeliveryRow).values(created_at=then))


async def test_a_paused_webhooks_queue_outlives_the_retention(
    hapi: Api, receiver: Receiver
) -> None:
    """The receiver is down, and the webhook is paused while its delivery waits."""
    session = await ready_session(hapi)
    await receiver.stop()
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    path = f"{hooks_path(session['id'])}/{hook['id']}"
    await inbound(hapi, session["id"], "while down")
    await wait_deliveries(hapi, session["id"], hook["id"], lambda ds: ds and ds[0]["attempts"])
    data_of(await hapi.request("PATCH", path, json={"active": False}))
    await _age_everything(hapi, days=30)  # the default retention is 7
    await hapi.services.maintenance.run_once()

    await receiver.start()
    data_of(await hapi.request("PATCH", path, json={"active": True}))
    [delivery] = await wait_deliveries(hapi, session["id"], hook["id"], all_succeeded(1))
    [received] = receiver.requests
    assert received.payload["data"]["text"] == "while down"
    assert delivery["attempts"] >= 2

    # Delivered: the event goes at the next clean-up, and the delivery, which changed
    # just now, stays in the log for the retention.
    await hapi.services.maintenance.run_once()
    page = data_of(await hapi.request("GET", "/api/events", params={"after": 0, "limit": 100}))
    assert "while down" not in [e["data"].get("text") for e in page["events"]]
    assert len(await wait_deliveries(hapi, session["id"], hook["id"], all_succeeded(1))) == 1
