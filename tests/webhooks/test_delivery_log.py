"""The delivery log: a success kept on its delivery row shows once, whoever wrote it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from openwa.db.models import DeliveryAttemptRow, DeliveryRow
from openwa.kit.clock import utcnow
from openwa.webhooks.service import _delivery
from tests.fixtures.app import Api
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import data_of, delivered_once, wait_deliveries


def _row(**values: object) -> DeliveryRow:
    now = utcnow()
    defaults: dict[str, object] = {
        "id": 7,
        "webhook_id": "wh_1",
        "session_id": "ses_1",
        "event_cursor": 1,
        "event_id": "evt_1",
        "event": "message.received",
        "status": "succeeded",
        "attempts": 1,
        "next_attempt_at": now,
        "last_status_code": 200,
        "last_duration_ms": 12,
        "created_at": now,
        "updated_at": now,
    }
    return DeliveryRow(**{**defaults, **values})


def _attempt(row: DeliveryRow, attempt: int, status: int, **values: object) -> DeliveryAttemptRow:
    return DeliveryAttemptRow(
        delivery_id=row.id,
        attempt=attempt,
        at=values.get("at", row.updated_at),
        status_code=status,
        error=None if status == 200 else f"HTTP {status}",
        duration_ms=5,
    )


def test_a_success_written_as_a_row_by_older_code_shows_once() -> None:
    # An instance on the older code (a rolling upgrade) replayed and then delivered it:
    # its success has a row, stamped with the delivery's time; the stale duration on
    # the delivery row adds nothing.
    row = _row()
    log = _delivery(row, [_attempt(row, 1, 200)]).log
    assert [(a.attempt, a.status_code) for a in log] == [(1, 200)]


def test_a_delivery_no_longer_succeeded_shows_no_success_from_its_row() -> None:
    # Older code failed it after a success on the newer one, leaving the duration.
    row = _row(status="pending", attempts=1, last_status_code=500)
    log = _delivery(row, [_attempt(row, 1, 500)]).log
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500)]


def test_a_success_after_a_replay_of_failures_shows_after_them() -> None:
    row = _row(attempts=1)
    earlier = row.updated_at - timedelta(minutes=1)
    failures = [_attempt(row, n, 500, at=earlier) for n in (1, 2)]
    log = _delivery(row, failures).log
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 500), (1, 200)]
    assert log[-1].duration_ms == 12


async def test_two_replays_at_once_keep_the_success_once(hapi: Api, receiver: Receiver) -> None:
    done = await delivered_once(hapi, receiver.url, "replayed twice")
    session, hook, first = done.session, done.hook, done.delivery
    path = done.retry_path()
    answers = await asyncio.gather(*(hapi.request("POST", path) for _ in range(2)))
    for answer in answers:
        data_of(answer)
    [settled] = await wait_deliveries(
        hapi,
        session["id"],
        hook["id"],
        lambda ds: ds[0]["status"] == "succeeded" and len(ds[0]["log"]) >= 2,
        what="the replays",
    )
    successes = [a for a in settled["log"] if a["at"] == first["log"][0]["at"]]
    assert len(successes) == 1, settled["log"]
