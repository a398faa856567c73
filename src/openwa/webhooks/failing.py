"""A webhook whose receiver has failed for days is switched off, with the reason kept.

A receiver that is gone for good (its app deleted, its domain lapsed) would otherwise be
retried for ever: each delivery takes its full round of attempts before the next may
go, so its queue, and the events it holds back from retention, grow without end. As
Stripe and Svix do, a webhook with no successful delivery for `WEBHOOK_DISABLE_AFTER_DAYS`
that still fails is deactivated at that failure: `active` false, `disabledReason` saying
why and since when. Nothing waiting is lost: its deliveries stay pending and go out once
a client sets `active` again (which clears the reason); events of the time it was off
are not queued for it, as for any inactive webhook, and stay readable in the event log.

The run of failures is kept on the webhook row: `failing_since` is set at the first
failed attempt after a success, or after a day without a failure (`RUN_GAP`: a webhook
with no events for days made no attempts then, and one failure after such a quiet time
is not days of failing), and cleared by the next success or a new URL;
`last_failure_at` is the latest failed attempt. They are written in a transaction of
their own after the attempt's result, not in the results' transaction, which would
then lock the webhook row beside its delivery rows (a webhook deleted at that moment
is a deadlock on PostgreSQL); failed attempts are few next to deliveries (a receiver
that fails is retried with backoff), and a success writes only when it ends a run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import WebhookRow

# Failures further apart than this are not one run.
RUN_GAP = timedelta(days=1)


async def note_failure(
    db: AsyncSession, webhook_id: str, now: datetime, disable_after: timedelta | None
) -> bool:
    """Start a run of failures unless one is running; switch the webhook off if the run
    began `disable_after` ago or earlier. Whether it was switched off now."""
    # FOR NO KEY UPDATE: the fan-out's inserts of deliveries (their key share on the
    # webhook row) go on meanwhile.
    row = await db.get(WebhookRow, webhook_id, with_for_update={"key_share": True})
    if row is None:
        return False
    previous, row.last_failure_at = row.last_failure_at, now
    if row.failing_since is None or previous is None or previous < now - RUN_GAP:
        row.failing_since = now
        return False
    if disable_after is None or not row.active or row.failing_since > now - disable_after:
        return False
    days = disable_after / timedelta(days=1)
    row.active, row.updated_at = False, now
    row.disabled_reason = (
        f"switched off: no successful delivery since {row.failing_since.isoformat()}, "
        f"and still failing (WEBHOOK_DISABLE_AFTER_DAYS={days:g}); set active to resume"
    )
    return True


async def note_success(db: AsyncSession, webhook_id: str) -> None:
    """The run of failures is over."""
    await db.execute(
        update(WebhookRow)
        .where(WebhookRow.id == webhook_id, WebhookRow.failing_since.is_not(None))
        .values(failing_since=None)
    )


def new_receiver(row: WebhookRow) -> None:
    """A new URL: the old receiver's failures are not the new one's."""
    row.failing_since = row.last_failure_at = None


def switch_on(row: WebhookRow) -> None:
    """Active again by a client's word (or config, or a new `WEBHOOK_URL`): our reason
    and the run of failures end."""
    row.active, row.disabled_reason = True, None
    new_receiver(row)
