"""A webhook whose receiver fails for days is switched off, with the reason shown; its
waiting deliveries stay and go out once a client switches it on again.

"Days" are made by moving the start of the run of failures back in the database (and
its latest failure, for a quiet time): the worker's rule reads those columns, so
nothing here waits on a clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from openwa.db.models import WebhookRow
from openwa.kit.clock import utcnow
from tests.fixtures.app import Api, wait_for
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    data_of,
    deliveries,
    hooks_path,
    inbound,
    message_ids,
    ready_session,
    register,
    wait_deliveries,
)

EVENTS = ["message.received"]


async def _webhook(api: Api, session_id: str | None, webhook_id: str) -> dict[str, Any]:
    found: dict[str, Any] = data_of(
        await api.request("GET", f"{hooks_path(session_id)}/{webhook_id}")
    )
    return found


def _until(api: Api, session_id: str | None, webhook_id: str, what: str, done: Any) -> Any:
    return wait_for(lambda: _webhook(api, session_id, webhook_id), done, 15.0, what)


async def _failing_for_days(
    api: Api, webhook_id: str, days: float, *, quiet_since_days: float = 0.0
) -> None:
    """The run began `days` ago; its latest failure was `quiet_since_days` ago."""
    now = utcnow()
    async with api.services.db() as db, db.begin():
        await db.execute(
            update(WebhookRow)
            .where(WebhookRow.id == webhook_id)
            .values(
                failing_since=now - timedelta(days=days),
                last_failure_at=now - timedelta(days=quiet_since_days),
            )
        )


async def _failing_hook(
    apps: Apps, receiver: Receiver, disable_after_days: int
) -> tuple[Api, dict[str, Any], dict[str, Any]]:
    """An app, a session and its webhook whose receiver answers 503, once it is failing."""
    api = await apps.start(webhook_disable_after_days=disable_after_days)
    session = await ready_session(api)
    hook = await register(api, session["id"], f"{receiver.base}/hook", events=EVENTS)
    receiver.respond = lambda _: 503
    await inbound(api, session["id"], "fails")
    await _until(api, session["id"], hook["id"], "failing", lambda h: h["failingSince"])
    return api, session, hook


async def test_a_run_of_failures_is_kept_until_a_success(apps: Apps, receiver: Receiver) -> None:
    api = await apps.start()
    session = await ready_session(api)
    hook = await register(api, session["id"], f"{receiver.base}/hook", events=EVENTS)
    assert hook["failingSince"] is None
    assert hook["disabledReason"] is None
    receiver.respond = lambda _: 503
    await inbound(api, session["id"], "fails first")
    failing = await _until(
        api, session["id"], hook["id"], "the run of failures", lambda h: h["failingSince"]
    )
    assert failing["active"]
    assert failing["disabledReason"] is None

    receiver.respond = lambda _: 200
    await _until(
        api, session["id"], hook["id"], "a success to end it", lambda h: not h["failingSince"]
    )
    await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1))


async def test_a_webhook_failing_for_days_is_switched_off_and_resumes_when_switched_on(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_disable_after_days=5)
    session = await ready_session(api)
    hook = await register(api, session["id"], f"{receiver.base}/hook", events=EVENTS)
    receiver.respond = lambda _: 503
    first = await inbound(api, session["id"], "while the receiver is gone")
    await _until(api, session["id"], hook["id"], "failing", lambda h: h["failingSince"])
    await _failing_for_days(api, hook["id"], 6)

    off = await _until(api, session["id"], hook["id"], "switched off", lambda h: not h["active"])
    assert "WEBHOOK_DISABLE_AFTER_DAYS=5" in off["disabledReason"]
    metrics = (await api.request("GET", "/metrics")).text
    assert "openwa_webhooks_switched_off 1.0" in metrics
    # Nothing waiting is lost; events while it is off are not queued for it.
    await inbound(api, session["id"], "while it is off")
    [waiting] = await deliveries(api, session["id"], hook["id"])
    assert waiting["status"] == "pending"
    assert waiting["attempts"] >= 2

    receiver.respond = lambda _: 200
    switched = data_of(
        await api.request(
            "PATCH", f"{hooks_path(session['id'])}/{hook['id']}", json={"active": True}
        )
    )
    assert switched["active"]
    assert switched["disabledReason"] is None
    assert switched["failingSince"] is None
    [done] = await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1))
    assert done["eventId"] == waiting["eventId"]
    assert message_ids(receiver.of("message.received"))[-1] == first


@pytest.mark.parametrize(
    ("disable_after_days", "failing_days"),
    [(5, 4), (0, 365)],  # failing for less; 0 switches nothing off
    ids=["failing-for-less", "zero-never"],
)
async def test_a_webhook_stays_on(
    apps: Apps, receiver: Receiver, disable_after_days: int, failing_days: int
) -> None:
    api, session, hook = await _failing_hook(apps, receiver, disable_after_days)
    await _failing_for_days(api, hook["id"], failing_days)
    attempts = len(receiver.requests)
    await wait_for(
        lambda: _count(receiver), lambda n: n >= attempts + 2, 15.0, "two more failed attempts"
    )
    assert (await _webhook(api, session["id"], hook["id"]))["active"]


async def test_a_config_webhook_switched_off_is_switched_on_by_listing_it_again(
    apps: Apps, receiver: Receiver
) -> None:
    """A client that sends its config again (as it was, active) switches the webhook on
    in place: the same id, its waiting deliveries kept."""
    api = await apps.start(webhook_disable_after_days=5)
    url = f"{receiver.base}/config"
    config = {"webhooks": [{"url": url, "events": EVENTS}]}
    session = await ready_session(api, config=config)
    [hook] = data_of(await api.request("GET", hooks_path(session["id"])))
    receiver.respond = lambda _: 503
    await inbound(api, session["id"], "fails")
    await _until(api, session["id"], hook["id"], "failing", lambda h: h["failingSince"])
    await _failing_for_days(api, hook["id"], 6)
    await _until(api, session["id"], hook["id"], "switched off", lambda h: not h["active"])

    receiver.respond = lambda _: 200
    patched = await api.request("PATCH", f"/api/sessions/{session['id']}", json={"config": config})
    data_of(patched)
    again = await _webhook(api, session["id"], hook["id"])
    assert again["active"]
    assert again["disabledReason"] is None
    await wait_deliveries(api, session["id"], hook["id"], all_succeeded(1))


async def test_a_failure_after_a_quiet_time_starts_a_new_run(
    apps: Apps, receiver: Receiver
) -> None:
    """A webhook whose last delivery failed six days ago, with no events since, is not
    six days failing: its next failure starts a run, and it stays on."""
    api, session, hook = await _failing_hook(apps, receiver, 5)
    await _failing_for_days(api, hook["id"], 6, quiet_since_days=6)
    started = utcnow() - timedelta(minutes=1)
    restarted = await _until(
        api,
        session["id"],
        hook["id"],
        "a new run",
        lambda h: datetime.fromisoformat(h["failingSince"]) > started,
    )
    assert restarted["active"]
    assert restarted["disabledReason"] is None


async def test_a_new_url_starts_afresh(apps: Apps, receiver: Receiver) -> None:
    api = await apps.start(webhook_disable_after_days=5)
    session = await ready_session(api)
    hook = await register(api, session["id"], f"{receiver.base}/old", events=EVENTS)
    receiver.respond = lambda _: 503
    await inbound(api, session["id"], "fails")
    await _until(api, session["id"], hook["id"], "failing", lambda h: h["failingSince"])
    path = f"{hooks_path(session['id'])}/{hook['id']}"
    moved = data_of(await api.request("PATCH", path, json={"url": f"{receiver.base}/new"}))
    assert moved["failingSince"] is None
    assert moved["active"]


async def _count(receiver: Receiver) -> int:
    return len(receiver.requests)
