"""A webhook whose receiver has failed for days is switched off, with the reason kept.

A receiver that is gone for good (its app deleted, its domain lapsed) would otherwise be
retried for ever: each delivery takes its full round of attempts before the next may
go, so its queue, and the events it holds back from retention, grow without end. As
Stripe and Svix do, a webhook with no successful delivery for `WEBHOOK_DISABLE_AFTER_DAYS`
that still fails is deactivated at that failure: `active` false, `disabledReason` saying
why and since when. Nothing waiting is lost: its deliveries stay pending and go out once
a client sets `active` again (which clears the reason); events of the time it was off
are not queued for it, as for any inactive webhook, and stay readable in the event log.

The run of failures is kept on the webhook row (`failing_since`): set at the first
failed attempt after a success, cleared by the next success. Both are written in a
transaction of their own after the attempt's result, not in the results' transaction,
which would then lock the webhook row beside its delivery rows (a webhook deleted at
that moment is a deadlock on PostgreSQL); they are rare (failures, and the first
success after them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import WebhookRow


async def note_failure(
    db: AsyncSession, webhook_id: str, now: datetime, disable_after: timedelta | None
) -> bool:
    """Start the run of failures if none is running; switch the webhook off if the run
    began `disable_after` ago or earlier. Whether it was switched off now."""
    row = await db.get(WebhookRow, webhook_id, with_for_update=True)
    if row is None:
        return False
    if row.failing_since is None:
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
