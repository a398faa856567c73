"""A webhook deleted while another call on it is between its read and its write.

On PostgreSQL such a call read the webhook, the delete committed, and the call's write
then found it gone: a test event's delivery broke the foreign key, a change or a new
secret updated no row; each was answered 500. The call now locks the webhook as it
reads it, only against deletes (fan-outs go on adding deliveries beside it): the delete
waits for the call, then takes what the call wrote along with the webhook. An event's
fan-out locks the webhooks it reads the same way, and waits for a delete. SQLite runs
one writer at a time, so the race cannot happen there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, select

from openwa.db.models import DeliveryRow, WebhookRow
from openwa.db.unit_of_work import unit_of_work
from openwa.events.types import Event
from openwa.webhooks.service import WebhookService
from tests.fixtures.app import wait_for
from tests.fixtures.locks import postgres_only, waiting
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ready_session, register
from tests.webhooks.test_deadlocks import FAILSAFE_S

# The call, the path under the webhook's, its body and its answer.
CALLS: dict[str, tuple[str, str, dict[str, Any] | None, int]] = {
    "test event": ("POST", "/test", None, 202),
    "change": ("PATCH", "", {"events": ["*"]}, 200),
    "new secret": ("POST", "/rotate-secret", {"graceSeconds": 60}, 200),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_a_webhook_deleted_during_a_call_on_it_answers_both(
    apps: Apps,
    receiver: Receiver,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
) -> None:
    postgres_only(database_url)
    api = await apps.start()
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    path = f"/api/sessions/{session['id']}/webhooks/{hook['id']}"
    read, proceed = asyncio.Event(), asyncio.Event()
    find = WebhookService._row

    async def pausing(*args: Any, **kwargs: Any) -> Any:
        found = await find(*args, **kwargs)
        if not read.is_set():  # the call's read, not the delete's
            read.set()
            await proceed.wait()
        return found

    monkeypatch.setattr(WebhookService, "_row", pausing)
    method, suffix, body, status = CALLS[call]
    calling = asyncio.ensure_future(api.request(method, path + suffix, json=body))
    await asyncio.wait_for(read.wait(), FAILSAFE_S)
    deleting = asyncio.ensure_future(api.request("DELETE", path))
    deletes_waiting = waiting(api, "DELETE FROM webhooks")

    async def delete_done_or_waiting() -> bool:
        return deleting.done() or await deletes_waiting() > 0

    try:
        await wait_for(delete_done_or_waiting, bool, FAILSAFE_S, "the delete to end or wait")
    finally:
        proceed.set()
    answered, deleted = await calling, await deleting
    assert answered.status_code == status, answered.text
    assert deleted.status_code == 200, deleted.text
    assert (await api.request("GET", path)).status_code == 404


async def test_an_event_written_while_its_webhook_is_deleted_is_written(
    apps: Apps, receiver: Receiver, database_url: str
) -> None:
    """An event's fan-out read a webhook whose delete had not committed yet, and added a
    delivery for it: once the delete committed, the delivery's foreign key failed, and
    the event's whole transaction with it (a send's `sent`, a session's `ready`). The
    fan-out now waits for the delete and leaves the webhook out."""
    postgres_only(database_url)
    api = await apps.start()
    session = await ready_session(api)
    gone = await register(api, session["id"], receiver.url, events=["message.received"])
    kept = await register(api, session["id"], receiver.url, events=["message.received"])
    event = Event("message.received", session["id"], "mock", {"id": "while-deleting"})
    async with api.services.db() as deleting:
        await deleting.execute(delete(WebhookRow).where(WebhookRow.id == gone["id"]))

        async def append() -> None:
            async with unit_of_work(api.services.db) as db:
                await api.services.events.append(db, [event])

        appending = asyncio.ensure_future(append())
        await wait_for(waiting(api), bool, FAILSAFE_S, "the event's write to wait")
        await deleting.commit()
    await asyncio.wait_for(appending, FAILSAFE_S)
    async with api.services.db() as db:
        hooks = await db.scalars(
            select(DeliveryRow.webhook_id).where(DeliveryRow.event_id == event.id)
        )
        assert list(hooks) == [kept["id"]]
