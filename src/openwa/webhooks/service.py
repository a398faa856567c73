"""Webhook use cases, and the fan-out of each logged event into delivery rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import table_of
from openwa.db.engine import is_postgres, on_commit
from openwa.db.instance_lock import advisory_key
from openwa.db.models import DeliveryAttemptRow, DeliveryRow, WebhookRow
from openwa.db.repository import Held
from openwa.db.retry import again_if_deadlocked
from openwa.db.sqlite_driver import off_the_loop
from openwa.errors import NotFound, SessionNotFound, WebhookLimitReached, WebhookNotFound
from openwa.events.log import EventLog
from openwa.events.types import WEBHOOK_TEST, Event, wanted
from openwa.kit.addresses import check_url
from openwa.kit.clock import utcnow
from openwa.kit.ids import new_id
from openwa.kit.pagination import PageParams
from openwa.kit.signal import Signal
from openwa.sessions.repository import SessionRepository
from openwa.webhooks.failing import new_receiver, switch_on
from openwa.webhooks.repository import WebhookRepository
from openwa.webhooks.schemas import (
    ConfigWebhook,
    Delivery,
    DeliveryAttempt,
    RotatedSecret,
    TestDelivery,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
)
from openwa.webhooks.signing import generate_secret

# When WEBHOOK_SECRET changes, the env webhook's old secret signs beside the new one this
# long, so a receiver that still has the old one goes on verifying meanwhile.
ENV_SECRET_GRACE = timedelta(hours=24)


def to_schema(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        session_id=row.session_id,
        url=row.url,
        events=row.events,
        headers=row.headers,
        active=row.active,
        source=row.source,
        failing_since=row.failing_since,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def with_secret(row: WebhookRow) -> WebhookWithSecret:
    return WebhookWithSecret(**to_schema(row).model_dump(), secret=row.secret)


def as_configured(row: WebhookRow, shown: bool) -> ConfigWebhook:
    return ConfigWebhook(**to_schema(row).model_dump(), secret=row.secret if shown else None)


def _delivery(row: DeliveryRow, attempts: list[DeliveryAttemptRow]) -> Delivery:
    return Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event=row.event,
        session_id=row.session_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        log=[
            DeliveryAttempt(
                attempt=a.attempt,
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                location=(a.details or {}).get("location"),
            )
            for a in [*attempts, *_success_on_row(row, attempts)]
        ],
    )


def _success_on_row(
    row: DeliveryRow, attempts: list[DeliveryAttemptRow]
) -> list[DeliveryAttemptRow]:
    """The successful last attempt kept on the delivery row (it has no row of its own).

    During a rolling upgrade an instance still on the older code writes every success
    as an attempt row (stamped with the row's `updated_at`) and never clears
    `last_duration_ms`: a success that has its row, or a delivery no longer succeeded,
    shows nothing from here."""
    if row.last_duration_ms is None or row.status != "succeeded":
        return []
    if any(a.attempt == row.attempts and a.at == row.updated_at for a in attempts):
        return []
    return [
        DeliveryAttemptRow(
            delivery_id=row.id,
            attempt=row.attempts,
            at=row.updated_at,
            status_code=row.last_status_code,
            error=None,
            duration_ms=row.last_duration_ms,
        )
    ]


def _delivery_values(webhook_id: str, event: Event, now: datetime) -> dict[str, Any]:
    assert event.cursor is not None, "deliveries are made of stored events"
    return {
        "webhook_id": webhook_id,
        "session_id": event.session_id,
        "event_cursor": event.cursor,
        "event_id": event.id,
        "event": event.event,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _listed_again(row: WebhookRow, new: WebhookRow, body: WebhookCreate) -> bool:
    """Whether `new` (made from `body`) is the config webhook `row` listed again."""
    return (
        row.url == new.url
        and sorted(row.events) == sorted(new.events)
        and (row.headers or {}) == (new.headers or {})
        # One we switched off, listed again as active, is the same webhook switched on.
        and (row.active == new.active or (row.disabled_reason is not None and new.active))
        and (body.secret is None or body.secret == row.secret)
    )


def new_delivery(webhook_id: str, event: Event) -> DeliveryRow:
    return DeliveryRow(**_delivery_values(webhook_id, event, utcnow()))


class WebhookService:
    """Webhook use cases on the caller's unit of work (a request's, or a job's)."""

    def __init__(
        self,
        events: EventLog,
        *,
        allow_private: bool,
        wake: Signal,
        max_per_session: int,
    ) -> None:
        self._events = events
        self._allow_private = allow_private
        self._wake = wake
        self._max_per_session = max_per_session
        events.add_fan_out(self.fan_out)

    async def fan_out(self, db: AsyncSession, events: Sequence[Event]) -> None:
        """One delivery per event and matching webhook, in the event's own transaction."""
        events = [e for e in events if e.event != WEBHOOK_TEST]
        if not events:
            return
        hooks = await WebhookRepository(db).active_for(sorted({e.session_id for e in events}))
        now = utcnow()
        deliveries = [
            _delivery_values(hook.id, event, now)
            for event in events
            for hook in hooks
            if (hook.session_id is None or hook.session_id == event.session_id)
            and wanted(hook.events, event.event)
        ]
        if deliveries:
            # One executemany for the whole fan-out.
            await db.execute(insert(table_of(DeliveryRow)), deliveries)

    async def prepare(self, session_id: str | None, body: WebhookCreate, source: str) -> WebhookRow:
        """A checked, unsaved webhook row (the caller adds it in its own transaction)."""
        await check_url(body.url, self._allow_private)
        now = utcnow()
        return WebhookRow(
            id=new_id("wh"),
            session_id=session_id,
            url=body.url,
            events=body.events or ["*"],
            secret=body.secret or generate_secret(),
            headers=body.headers or {},
            active=body.active,
            source=source,
            created_at=now,
            updated_at=now,
        )

    async def create(
        self, db: AsyncSession, session_id: str | None, body: WebhookCreate, source: str = "api"
    ) -> WebhookWithSecret:
        row = await self.prepare(session_id, body, source)
        if (
            session_id is not None
            and await SessionRepository(db).get_held(session_id, held="to refer to") is None
        ):
            # Deleted since the route looked it up: a 404, not a foreign key that breaks
            # at the commit (503 "try again", which could only find it gone).
            raise SessionNotFound(details={"session": session_id})
        if source == "api":
            await self._check_room(db, session_id, 1)
        WebhookRepository(db).add(row)
        return with_secret(row)

    async def _check_room(
        self, db: AsyncSession, session_id: str | None, adding: int, *, removing: int = 0
    ) -> None:
        """Refuse a change that adds `adding` webhooks and removes `removing` of this
        owner's (a session, or None: instance-wide) if it leaves more than
        `WEBHOOK_MAX_PER_SESSION` and more than there are now: a change that does not
        grow the list always passes, so that an owner over a lowered bound can still
        shrink or rewrite its config.

        Every event goes to each webhook of its session and to every instance-wide one,
        so without a bound one key could make each event thousands of deliveries.
        On PostgreSQL the count and the insert hold a lock for the owner until the unit
        of work ends, so two creates at once cannot both take the last place (SQLite
        runs one writer at a time)."""
        if is_postgres(db):
            key = advisory_key(f"webhooks:{session_id or '*'}")
            await db.execute(select(func.pg_advisory_xact_lock(key)))
        held = await WebhookRepository(db).count(session_id)
        after = held - removing + adding
        if after > self._max_per_session and after > held:
            raise WebhookLimitReached(
                details={"limit": self._max_per_session, "registered": held, "after": after},
            )

    async def replace_config_webhooks(
        self,
        db: AsyncSession,
        session_id: str,
        rows: Sequence[WebhookRow],
        bodies: Sequence[WebhookCreate],
    ) -> list[tuple[WebhookRow, bool]]:
        """In the caller's transaction: the session's `config.webhooks` become `rows`
        (made from `bodies`); the webhooks as they are now, in the order given, each with
        whether its secret may be shown (made now, or given in the body: a kept one's
        secret is not shown again, as for any webhook after its creation).

        A webhook listed again as it is (the same URL, events, headers and state, and
        the same secret where one is given) is kept as it is, with its id, its secret
        and its queue: a client that sends its whole config again (to change another
        field) used to replace them all, losing the deliveries that waited for a
        receiver that was down and, without a secret in the body, the secret its
        receiver checks."""
        old = await WebhookRepository(db).by_source("config", session_id)
        found: dict[int, WebhookRow] = {}
        # Entries that give a secret first: one without could otherwise take the row
        # whose secret a later entry names, and that row would be replaced.
        order = sorted(range(len(bodies)), key=lambda i: bodies[i].secret is None)
        for index in order:
            same = next((o for o in old if _listed_again(o, rows[index], bodies[index])), None)
            if same is not None:
                old.remove(same)
                found[index] = same
                if rows[index].active and not same.active:
                    switch_on(same)
                    same.updated_at = utcnow()
        result: list[tuple[WebhookRow, bool]] = []
        added: list[WebhookRow] = []
        for index, (row, body) in enumerate(zip(rows, bodies, strict=True)):
            if index in found:
                result.append((found[index], body.secret is not None))
            else:
                added.append(row)
                result.append((row, True))
        await self._check_room(db, session_id, len(added), removing=len(old))
        for gone in old:
            await db.delete(gone)
        with off_the_loop():  # their deliveries go with them: maybe many rows
            await db.flush()
        db.add_all(added)
        return result

    async def page(
        self, db: AsyncSession, session_id: str | None, params: PageParams
    ) -> tuple[list[Webhook], int]:
        rows, total = await WebhookRepository(db).page(session_id, params)
        return [to_schema(row) for row in rows], total

    async def get(self, db: AsyncSession, session_id: str | None, webhook_id: str) -> Webhook:
        return to_schema(await self._row(db, session_id, webhook_id))

    async def update(
        self, db: AsyncSession, session_id: str | None, webhook_id: str, body: WebhookUpdate
    ) -> Webhook:
        if body.url is not None:
            await check_url(body.url, self._allow_private)
        row = await self._row(db, session_id, webhook_id, "to change")
        was_active, old_url = row.active, row.url
        for name, value in body.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(row, name, value)
        if row.url != old_url:
            new_receiver(row)
        if body.active and not was_active:
            switch_on(row)
        elif body.active is False:
            row.disabled_reason = None  # the client's word on it now, not ours
        row.updated_at = utcnow()
        on_commit(db, self._wake.notify)  # a reactivated webhook has deliveries waiting
        return to_schema(row)

    async def delete(self, db: AsyncSession, session_id: str | None, webhook_id: str) -> None:
        """Delete the webhook (first thing in the caller's unit of work) with its queue.

        The delete cascades to its deliveries, which the delivery worker may be
        claiming or recording meanwhile: on PostgreSQL it may lose a deadlock to it,
        and is then done again rather than answered 503 "try again"."""

        async def remove() -> None:
            row = await self._row(db, session_id, webhook_id)
            with off_the_loop():  # its deliveries go with it: maybe many rows
                await WebhookRepository(db).delete(row)

        await again_if_deadlocked(
            remove, event="webhook_delete_retried", db=db, webhook_id=webhook_id
        )

    async def rotate(
        self, db: AsyncSession, session_id: str | None, webhook_id: str, grace_seconds: int
    ) -> RotatedSecret:
        row = await self._row(db, session_id, webhook_id, "to change")
        until = utcnow() + timedelta(seconds=grace_seconds)
        row.previous_secret, row.previous_secret_until = row.secret, until
        row.secret, row.updated_at = generate_secret(), utcnow()
        return RotatedSecret(secret=row.secret, previous_secret_valid_until=until)

    async def deliveries(
        self, db: AsyncSession, session_id: str | None, webhook_id: str, params: PageParams
    ) -> tuple[list[Delivery], int]:
        await self._row(db, session_id, webhook_id)
        repo = WebhookRepository(db)
        rows, total = await repo.deliveries(webhook_id, params)
        attempts = await repo.attempts([row.id for row in rows])
        by_delivery: dict[int, list[DeliveryAttemptRow]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        return [_delivery(row, by_delivery.get(row.id, [])) for row in rows], total

    async def retry(
        self, db: AsyncSession, session_id: str | None, webhook_id: str, delivery_id: int
    ) -> Delivery:
        """Replay a delivery: pending again, due now, with a fresh set of attempts (one
        that a lane is delivering right now is left to it, as it is)."""
        await self._row(db, session_id, webhook_id)
        # Locked: two replays at once would each turn the success below into a row.
        row = await db.get(DeliveryRow, delivery_id, with_for_update=True)
        if row is None or row.webhook_id != webhook_id:
            raise NotFound("delivery not found", details={"deliveryId": delivery_id})
        attempts = await WebhookRepository(db).attempts([row.id])
        if row.status == "pending" and row.locked_until is not None and row.locked_until > utcnow():
            # In a lane's hands now: it is going out. Replaying it would send it again
            # beside the lane's request, and the lane's result would then overwrite it.
            return _delivery(row, attempts)
        # The success kept on the row becomes a row of its own: the log keeps it.
        kept = _success_on_row(row, attempts)
        db.add_all(kept)
        row.last_duration_ms = None
        row.status, row.attempts, row.locked_until = "pending", 0, None
        row.next_attempt_at = row.updated_at = utcnow()
        on_commit(db, self._wake.notify)
        return _delivery(row, [*attempts, *kept])

    async def test(self, db: AsyncSession, session_id: str | None, webhook_id: str) -> TestDelivery:
        """Log a `webhook.test` event and deliver it to this webhook only."""
        hook = await self._row(db, session_id, webhook_id, "to refer to")
        event = Event(event=WEBHOOK_TEST, session_id=session_id or "", engine="", data={})
        [row] = await self._events.append(db, [event])
        delivery = new_delivery(hook.id, row)
        db.add(delivery)
        await db.flush()
        return TestDelivery(event_id=event.id, delivery_id=delivery.id)

    async def register_from_env(
        self, db: AsyncSession, url: str, secret: str | None, events: list[str]
    ) -> None:
        """`WEBHOOK_URL`: one instance-wide webhook, changed in place when the variables
        change. Replacing it deleted its queue with it (deliveries waiting for a receiver
        that was down, and their log), and, without `WEBHOOK_SECRET`, gave it a new
        secret that no receiver knew; its secret now stays unless `WEBHOOK_SECRET` names
        another, and the old one then signs beside it for `ENV_SECRET_GRACE`."""
        body = WebhookCreate(url=url, events=events, secret=secret)
        wanted = body.events or ["*"]
        repo = WebhookRepository(db)
        rows = await repo.by_source("env", None)
        if not rows:
            await self.create(db, None, body, source="env")
            return
        row, *extra = rows
        for other in extra:  # only ever one; a second would double every delivery
            with off_the_loop():
                await repo.delete(other)
        if row.url == url and row.events == wanted and secret in (None, row.secret):
            return
        if row.url != url:
            await check_url(url, self._allow_private)
            # A new receiver: switched on again if the old one failed for days.
            switch_on(row) if row.disabled_reason is not None else new_receiver(row)
        now = utcnow()
        row.url, row.events, row.updated_at = url, wanted, now
        if secret is not None and secret != row.secret:
            row.previous_secret, row.previous_secret_until = row.secret, now + ENV_SECRET_GRACE
            row.secret = secret
        on_commit(db, self._wake.notify)

    async def _row(
        self,
        db: AsyncSession,
        session_id: str | None,
        webhook_id: str,
        held: Held | None = None,
    ) -> WebhookRow:
        row = await WebhookRepository(db).owned(session_id, webhook_id, held=held)
        if row is None:
            raise WebhookNotFound(details={"webhookId": webhook_id})
        return row
