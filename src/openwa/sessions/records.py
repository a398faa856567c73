"""What the database keeps of a session's life: its row, status history, QR, last error, events.

Why a module of its own: the runtime decides *when* a session moves (an engine reported
something, a reconnect fell due, the server stops); this module decides *what is written*
when it does: which fields go with each status, the bounded `statusHistory`, and the
`session.status` / `session.qr` events, in the same transaction as the row, so a
subscriber never sees a status that a reader of the API cannot. The HTTP use cases write a
new session through it too, so the history and its first event have one shape.

`SessionRecords` holds no state of its own: each method writes in the caller's unit of
work and never commits. What follows a commit runs from the after-commit hook of
`db/engine.py`: the event log wakes its readers and the session directory takes the
row's new copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import SessionRow, WebhookRow
from openwa.errors import SessionNotFound
from openwa.events.log import EventLog
from openwa.events.types import (
    SESSION_CREATED,
    SESSION_DELETED,
    SESSION_QR,
    SESSION_STATUS,
    Event,
)
from openwa.kit.clock import iso, utcnow
from openwa.kit.redact import redact_text
from openwa.kit.text import REASON_MAX, clean_text
from openwa.sessions.qr import qr_data_url
from openwa.sessions.status import HISTORY_LENGTH, Status, can_move

log = structlog.get_logger(__name__)


def _identity(row: SessionRow) -> dict[str, Any]:
    """`session.created` / `session.deleted` data."""
    return {"id": row.id, "name": row.name, "engine": row.engine}


def session_metadata(row: SessionRow) -> dict[str, str]:
    metadata = (row.config or {}).get("metadata") or {}
    return {str(k): str(v) for k, v in metadata.items()}


def session_event(row: SessionRow, name: str, data: dict[str, Any]) -> Event:
    """An event of `row`'s session, carrying its engine and `metadata`."""
    return Event(
        event=name, session_id=row.id, engine=row.engine, data=data, metadata=session_metadata(row)
    )


class SessionRecords:
    """Session rows and their events, written in the caller's transaction."""

    def __init__(self, events: EventLog) -> None:
        self._events = events

    # A new session (the HTTP use case).

    async def create(
        self,
        db: AsyncSession,
        session_id: str,
        name: str,
        engine: str,
        config: dict[str, Any],
        webhooks: Sequence[WebhookRow] = (),
    ) -> SessionRow:
        """A `created` session with its `webhooks` (added before its first event, so
        that event reaches them); a clash of names raises `IntegrityError`."""
        now = utcnow()
        created = {"status": Status.CREATED.value, "previousStatus": None, "reason": "created"}
        row = SessionRow(
            id=session_id,
            name=name,
            engine=engine,
            status=Status.CREATED.value,
            status_history=[{**created, "at": iso(now)}],
            config=config,
            should_run=False,
            created_at=now,
            updated_at=now,
        )
        db.add(row)
        await db.flush()
        db.add_all(webhooks)
        await self._events.append(
            db,
            [
                session_event(row, SESSION_CREATED, _identity(row)),
                session_event(row, SESSION_STATUS, created),
            ],
        )
        return row

    async def deleted(self, db: AsyncSession, row: SessionRow) -> None:
        """`session.deleted`, written with the row's removal (its own webhooks go with
        the row: instance-wide webhooks and the event log keep it)."""
        await self._events.append(db, [session_event(row, SESSION_DELETED, _identity(row))])

    # The runtime's moves, one method per thing that happened.

    async def starting(self, db: AsyncSession, session_id: str, reason: str) -> SessionRow:
        """Started (by a user, a create, a restore): it should run from now on."""
        return await self.transition(
            db, session_id, Status.INITIALIZING, reason, should_run=True, last_error=None
        )

    async def reconnecting(self, db: AsyncSession, session_id: str, attempt: int) -> None:
        await self.transition(
            db, session_id, Status.INITIALIZING, f"reconnecting (attempt {attempt})"
        )

    async def qr_shown(self, db: AsyncSession, session_id: str, qr: str) -> None:
        qr_event = (SESSION_QR, {"qr": qr, "image": qr_data_url(qr)})
        await self.transition(db, session_id, Status.QR_READY, "waiting for scan", qr_event, qr=qr)

    async def linked(
        self, db: AsyncSession, session_id: str, phone_number: str | None, push_name: str | None
    ) -> None:
        await self.transition(
            db,
            session_id,
            Status.AUTHENTICATED,
            "linked",
            qr=None,
            phone_number=phone_number,
            push_name=clean_text(push_name, 100),  # the column's length
        )

    async def ready(self, db: AsyncSession, session_id: str) -> None:
        await self.transition(db, session_id, Status.READY, "connected", last_error=None)

    async def disconnected(self, db: AsyncSession, session_id: str, reason: str) -> None:
        """The connection dropped; the runtime reconnects by itself."""
        await self.transition(
            db, session_id, Status.DISCONNECTED, reason, qr=None, last_error=reason
        )

    async def ended(
        self, db: AsyncSession, session_id: str, reason: str, *, logged_out: bool
    ) -> None:
        """The engine gave up (or the device was logged out): it stays down."""
        fields: dict[str, Any] = {"should_run": False, "last_error": reason, "qr": None}
        if logged_out:
            fields.update(phone_number=None, push_name=None)
        await self.transition(db, session_id, Status.FAILED, reason, **fields)

    async def stopped(
        self, db: AsyncSession, session_id: str, reason: str, *, keep_running: bool
    ) -> None:
        """Stopped here; `keep_running` keeps `should_run` (a server shutdown restores it)."""
        row = await db.get(SessionRow, session_id)
        if row is None:
            return
        if Status(row.status) not in (Status.STOPPED, Status.CREATED):
            await self.transition(db, session_id, Status.STOPPED, reason, should_run=keep_running)
        elif not keep_running and row.should_run:
            await self.update(db, session_id, should_run=False)

    async def signed_out(self, db: AsyncSession, session_id: str) -> None:
        """Logged out: the account it was linked to is no longer known."""
        await self.update(db, session_id, phone_number=None, push_name=None, qr=None)

    async def no_room_at_restore(self, db: AsyncSession, session_id: str) -> None:
        await self.transition(
            db,
            session_id,
            Status.FAILED,
            "MAX_SESSIONS reached on restore",
            should_run=False,
            last_error="SESSION_LIMIT_REACHED: no room on this instance at start",
        )

    async def restore_failed(self, db: AsyncSession, session_id: str, error: str) -> None:
        await self.transition(db, session_id, Status.FAILED, "restore failed", last_error=error)

    # The two writes the moves above are made of.

    async def update(self, db: AsyncSession, session_id: str, **fields: Any) -> None:
        """Set `fields` without a change of status (nothing is logged)."""
        row = await db.get(SessionRow, session_id)
        if row is None:
            return
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = utcnow()

    async def transition(
        self,
        db: AsyncSession,
        session_id: str,
        status: Status,
        reason: str | None,
        extra_event: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> SessionRow:
        """Move to `status`, record it in `statusHistory` and log `session.status`.

        A move the status machine forbids is refused (logged, nothing written).
        """
        row = await db.get(SessionRow, session_id)
        if row is None:
            raise SessionNotFound(details={"id": session_id})
        # Reasons and errors are often an engine's words: cleaned, so that they store,
        # and redacted, since every role, event stream and webhook sees them (an error
        # may quote a proxy URL with its password, or a key).
        reason = _reported(reason)
        if isinstance(fields.get("last_error"), str):
            fields["last_error"] = _reported(fields["last_error"])
        previous = Status(row.status)
        if not can_move(previous, status) and previous != status:
            log.warning("status_move_refused", session_id=session_id, frm=previous, to=status)
            return row
        now = utcnow()
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = now
        events = []
        if previous != status:
            row.status = status.value
            change = {
                "status": status.value,
                "previousStatus": previous.value,
                "reason": reason,
                "at": iso(now),
            }
            row.status_history = [*row.status_history, change][-HISTORY_LENGTH:]
            data: dict[str, Any] = {"status": status.value, "previousStatus": previous.value}
            if reason:
                data["reason"] = reason
            events.append(session_event(row, SESSION_STATUS, data))
        if extra_event is not None:
            events.append(session_event(row, *extra_event))
        await self._events.append(db, events)
        return row


def _reported(text: str | None) -> str | None:
    return clean_text(redact_text(text) if text else text, REASON_MAX)
