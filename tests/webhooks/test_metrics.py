"""`/metrics` shows what the gateway moved and what waits to go out: a receiver that
keeps failing is a counter that grows and a backlog that ages, not only rows in its
delivery log."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from openwa import backlog
from tests.api.test_health import find, metrics, read_metrics
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    inbound,
    ready_session,
    register,
    wait_deliveries,
)

LATER_S = 600.0  # a failed delivery's next attempt: after the test


async def test_attempts_are_counted_and_the_waiting_delivery_shows(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(
        webhook_backoff_base_s=LATER_S, webhook_backoff_max_s=LATER_S, webhook_max_attempts=2
    )
    receiver.respond = lambda request: 500 if request.path == "/down" else 200
    session = await ready_session(api)
    up = await register(api, session["id"], receiver.url, events=["message.received"])
    down = await register(api, session["id"], receiver.base + "/down", events=["message.received"])
    await inbound(api, session["id"], "counted")
    await wait_deliveries(api, session["id"], up["id"], all_succeeded(1))
    await wait_deliveries(api, session["id"], down["id"], lambda ds: ds and ds[0]["attempts"] == 1)

    found = await read_metrics(api)
    assert find(found, "openwa_events_total", event="message.received") == [1.0]
    assert find(found, "openwa_webhook_attempts_total", result="succeeded") == [1.0]
    assert find(found, "openwa_webhook_attempts_total", result="failed") == [1.0]
    assert find(found, "openwa_webhook_deliveries_failed_total") == [0.0]
    assert find(found, "openwa_webhook_deliveries_pending") == [1.0]
    [oldest] = find(found, "openwa_webhook_delivery_oldest_pending_seconds")
    assert oldest > 0

    # A paused webhook's deliveries wait on purpose: not a backlog.
    path = f"/api/sessions/{session['id']}/webhooks/{down['id']}"
    assert (await api.request("PATCH", path, json={"active": False})).status_code == 200
    found = await read_metrics(api)
    assert find(found, "openwa_webhook_deliveries_pending") == [0.0]
    assert find(found, "openwa_webhook_delivery_oldest_pending_seconds") == [0.0]


async def test_a_delivery_given_up_and_the_queued_sends_show(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_attempts=1)
    receiver.answer(500)
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    await inbound(api, session["id"], "given up")
    await wait_deliveries(
        api, session["id"], hook["id"], lambda ds: ds and ds[0]["status"] == "failed"
    )
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await api.request(
        "POST",
        f"/api/sessions/{session['id']}/messages/text",
        json={"chatId": "+1 555 0100 200", "text": "in an hour", "sendAt": later},
    )
    assert response.status_code == 202, response.text

    found = await read_metrics(api)
    assert find(found, "openwa_webhook_deliveries_failed_total") == [1.0]
    assert find(found, "openwa_webhook_attempts_total", result="failed") == [1.0]
    assert find(found, "openwa_webhook_deliveries_pending") == [0.0]
    assert find(found, "openwa_sends_queued", state="scheduled") == [1.0]
    assert find(found, "openwa_sends_queued", state="due") == [0.0]
    assert find(found, "openwa_engine_reports_queued") == [0.0]


async def test_metrics_answer_when_the_backlog_cannot_be_read(
    apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requests and their errors matter most when the database does not answer: the
    scrape gives them, and the backlog it could not read as NaN (not stale values)."""
    api = await apps.start()

    async def unreadable(*_args: object) -> None:
        raise ConnectionRefusedError("the database does not answer")

    monkeypatch.setattr(backlog, "read_backlog", unreadable)
    assert (await api.request("GET", "/api/sessions")).status_code == 200
    found = await metrics(api)
    total = "openwa_http_requests_total"
    assert find(found, total, route="/api/sessions", status="200") == [1.0]  # the rest is there
    [pending] = find(found, "openwa_webhook_deliveries_pending")
    assert math.isnan(pending)
    assert find(found, "openwa_engine_reports_queued") == [0.0]
