"""What waits to go out, read for `/metrics` at each scrape (on the reader: a scrape
never queues for SQLite's write lock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.api.metrics import Backlog
from openwa.db.models import DeliveryRow, OutboxJobRow, SetAsideReportRow, WebhookRow
from openwa.kit.clock import utcnow
from openwa.kit.shared_call import SharedCall
from openwa.services import Services
from openwa.webhooks.repository import active_ids

log = structlog.get_logger(__name__)


# A scrape waits this long for the database; the rest of `/metrics` (the requests and
# their errors) matters most when it does not answer.
_READ_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ScrapeReads:
    """What a scrape reads of the database: sessions by status, and the backlog."""

    sessions_by_status: dict[str, int]
    backlog: Backlog


def shared_scrape_reads(services: Services) -> SharedCall[ScrapeReads]:
    """`/metrics` is open unless METRICS_REQUIRE_KEY: scrapes at the same time share one
    read, so a flood of them costs the database one read at a time. Nothing is reused
    after it (a scrape right after a change shows the change)."""

    async def read() -> ScrapeReads:
        counts = await services.sessions.counts_by_status()
        return ScrapeReads(counts, await current_backlog(services))

    return SharedCall(read, lambda: 0.0)


async def current_backlog(services: Services) -> Backlog:
    reports, held_back = services.runtime.reports_queued, services.runtime.held_back
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S), services.db_read() as db:
            return await read_backlog(db, utcnow(), reports, held_back)
    except Exception:
        log.warning("backlog_unread", exc_info=True)
        return Backlog.unread(reports, held_back)


async def read_backlog(
    db: AsyncSession, now: datetime, reports_queued: int, held_back: int
) -> Backlog:
    """Deliveries of active webhooks not yet made (a paused webhook's wait on purpose),
    and accepted sends not yet handed over; the engines' reports are this instance's."""
    deliveries = await db.execute(
        select(func.count(), func.min(DeliveryRow.created_at)).where(
            DeliveryRow.status == "pending", DeliveryRow.webhook_id.in_(active_ids())
        )
    )
    pending, oldest = deliveries.one()
    sends = await db.execute(
        select(
            func.count().filter(OutboxJobRow.due_at <= now),
            func.count().filter(OutboxJobRow.due_at > now),
        ).where(OutboxJobRow.done.is_(False))
    )
    due, scheduled = sends.one()
    switched_off = await db.scalar(
        select(func.count()).where(WebhookRow.disabled_reason.is_not(None))
    )
    set_aside = await db.scalar(select(func.count()).select_from(SetAsideReportRow))
    return Backlog(
        deliveries_pending=int(pending),
        oldest_delivery_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        sends_due=int(due),
        sends_scheduled=int(scheduled),
        reports_queued=reports_queued,
        held_back=held_back,
        webhooks_switched_off=int(switched_off or 0),
        reports_set_aside=int(set_aside or 0),
    )
