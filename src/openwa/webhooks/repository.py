"""Queries on webhooks and deliveries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, func, or_, select

from openwa.db.models import DeliveryAttemptRow, DeliveryRow, WebhookRow
from openwa.db.repository import Held, Repository
from openwa.kit.pagination import PageParams


def active_ids() -> Select[str]:
    """The ids of the webhooks that deliver (a paused one's deliveries wait on purpose),
    for `DeliveryRow.webhook_id.in_(...)`."""
    return select(WebhookRow.id).where(WebhookRow.active.is_(True))


def _owner(session_id: str | None) -> ColumnElement[bool]:
    """Webhooks of a session, or (None) the instance-wide ones."""
    if session_id is None:
        return WebhookRow.session_id.is_(None)
    return WebhookRow.session_id == session_id


class WebhookRepository(Repository[WebhookRow]):
    model = WebhookRow

    async def owned(
        self, session_id: str | None, webhook_id: str, *, held: Held | None = None
    ) -> WebhookRow | None:
        """The webhook if it belongs to `session_id` (None: an instance-wide one); `held`:
        for a call that writes after reading it (`Repository.get_held`)."""
        if held is None:
            row = await self.get(webhook_id)
        else:
            row = await self.get_held(webhook_id, held=held)
        if row is None or row.session_id != session_id:
            return None
        return row

    async def page(
        self, session_id: str | None, params: PageParams
    ) -> tuple[list[WebhookRow], int]:
        statement = (
            select(WebhookRow)
            .where(_owner(session_id))
            .order_by(WebhookRow.created_at, WebhookRow.id)
        )
        return await self.paginate(statement, params)

    async def count(self, session_id: str | None) -> int:
        """Webhooks of `session_id` (None: the instance-wide ones)."""
        statement = select(func.count()).select_from(WebhookRow).where(_owner(session_id))
        return int((await self.db.execute(statement)).scalar_one())

    async def active_for(self, session_ids: Sequence[str]) -> list[WebhookRow]:
        """Active webhooks that receive events of these sessions (instance-wide included).

        Locked against deletes only (PostgreSQL's `FOR KEY SHARE`, which changes to a
        webhook, the workers' included, do not wait for), in id order: a webhook being
        deleted is waited for and then left out. Read without it, a webhook whose
        delete had not committed yet got a delivery whose foreign key then failed, and
        the event's whole transaction with it (a send's `sent`, a session's `ready`)."""
        result = await self.db.execute(
            select(WebhookRow)
            .where(
                WebhookRow.active.is_(True),
                or_(WebhookRow.session_id.is_(None), WebhookRow.session_id.in_(session_ids)),
            )
            .order_by(WebhookRow.id)
            .with_for_update(read=True, key_share=True)
        )
        return list(result.scalars())

    async def by_source(self, source: str, session_id: str | None) -> list[WebhookRow]:
        result = await self.db.execute(
            select(WebhookRow).where(WebhookRow.source == source, _owner(session_id))
        )
        return list(result.scalars())

    async def deliveries(
        self, webhook_id: str, params: PageParams
    ) -> tuple[list[DeliveryRow], int]:
        statement = (
            select(DeliveryRow)
            .where(DeliveryRow.webhook_id == webhook_id)
            .order_by(DeliveryRow.id.desc())
        )
        return await self.paginate(statement, params)

    async def attempts(self, delivery_ids: Sequence[int]) -> list[DeliveryAttemptRow]:
        if not delivery_ids:
            return []
        result = await self.db.execute(
            select(DeliveryAttemptRow)
            .where(DeliveryAttemptRow.delivery_id.in_(delivery_ids))
            .order_by(DeliveryAttemptRow.delivery_id, DeliveryAttemptRow.id)
        )
        return list(result.scalars())
