"""Writing the audit log (with a request's change, or alone), reading it, pruning it."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from openwa.audit.draft import FIRST_USE, OK, AuditDraft, clean, note_key
from openwa.audit.repository import AuditRepository
from openwa.audit.schemas import AuditEntry, AuditFilters
from openwa.audit.seen import SeenPairs
from openwa.db.base import table_of
from openwa.db.batches import Prune
from openwa.db.engine import UnitOfWorkSession, on_commit, stage_insert
from openwa.db.group_commit import GroupCommit
from openwa.db.models import AuditRow, SessionRow
from openwa.db.unit_of_work import is_request_scoped, unit_of_work
from openwa.kit.clock import utcnow
from openwa.kit.pagination import PageParams

log = structlog.get_logger(__name__)


def _to_schema(row: AuditRow) -> AuditEntry:
    # The row's columns are the entry's fields, one for one.
    return AuditEntry.model_validate(row, from_attributes=True)


_CREATED_SESSION = "openwa.audit_created_session"


@event.listens_for(UnitOfWorkSession, "after_flush")
def _note_created_session(session: Session, _context: object) -> None:
    """A request that creates a session has none in its path: its entry names the one
    it flushed (the row itself may be gone from the session by the commit)."""
    if is_request_scoped(session):
        for row in session.new:
            if isinstance(row, SessionRow):
                session.info[_CREATED_SESSION] = row.id


def _stage_entry(
    db: AsyncSession,
    *,
    at: datetime,
    key_id: str | None,
    address: str | None,
    action: str,
    method: str,
    route: str,
    request_id: str,
    outcome: str,
    session_id: str | None = None,
    target: dict[str, str] | None = None,
    fields: list[str] | None = None,
    status: int | None = None,
) -> None:
    """One audit entry, written with the transaction's other staged rows at its commit."""
    stage_insert(
        db,
        table_of(AuditRow),
        {
            "at": at,
            "key_id": key_id,
            "address": address,
            "action": action,
            "method": method,
            "route": route,
            "session_id": session_id,
            "target": target,
            "fields": fields,
            "outcome": outcome,
            "status": status,
            "request_id": request_id,
        },
    )


class AuditService:
    """Entries are staged on the unit of work that carries the request's change; only a
    request that committed nothing, and a first use seen on a read, write on their own."""

    def __init__(self, db: async_sessionmaker[AsyncSession], seen: SeenPairs) -> None:
        self._db = db
        self._seen = seen
        # Entries written alone (calls whose change commits elsewhere, such as the mock's
        # inbound reports, and refusals) share transactions: a burst of them costs a few
        # commits, not one each; each call is still answered after its entry is durable.
        self._alone = GroupCommit(db, name="audit", part_of_the_call=False)

    async def close(self) -> None:
        """Write the entries still queued (after the last request has been answered)."""
        await self._alone.close()

    async def note_key_use(
        self, key_id: str, address: str | None, method: str, route: str, request_id: str
    ) -> None:
        """Called once a request's key has authenticated. A known (key, address) pair
        costs nothing; a new one is claimed with the request's audit entry, or, for a
        request that writes none (a read), in a small transaction now."""
        draft = note_key(key_id)
        if address is None:
            return
        if (key_id, address) in self._seen:
            return
        address = clean(address, 64)
        if draft is not None:
            draft.first_use = True
            return
        try:
            async with unit_of_work(self._db) as db:
                await self._claim(db, key_id, address, method, route, request_id)
        except Exception:
            # The read goes on; the next call from there tries again.
            log.warning("audit_first_use_failed", key_id=key_id)

    async def stage_ok(self, db: AsyncSession, draft: AuditDraft) -> None:
        """The entry of a successful call, in the unit of work of its change."""
        route = draft.route
        status = route.status_code if route is not None and route.status_code else 200
        await self.stage(db, draft, OK, status)

    async def stage(
        self, db: AsyncSession, draft: AuditDraft, outcome: str, status: int, *, again: bool = False
    ) -> None:
        """Add the draft's entry (and a first use it carries) to `db`; it counts as
        written once `db` commits. `again`: a call refused after it had committed a part
        (a session created, then not started) gets its final outcome as a second entry."""
        route = draft.route
        if route is None or draft.closed or (draft.written and not again):
            return
        if draft.first_use and draft.key_id is not None and draft.address is not None:
            await self._claim(
                db, draft.key_id, draft.address, draft.method, route.path, draft.request_id
            )
        # Staged: the entries of a group commit's units go in one statement.
        _stage_entry(
            db,
            at=utcnow(),
            key_id=draft.key_id,
            address=draft.address,
            action=clean(route.name, 64),
            method=draft.method,
            route=clean(route.path),
            request_id=draft.request_id,
            outcome=clean(outcome, 64),
            session_id=draft.session_id or db.info.get(_CREATED_SESSION),
            target=draft.target(),
            fields=draft.fields,
            status=status,
        )
        on_commit(db, draft.mark_written)

    async def write_alone(self, draft: AuditDraft, outcome: str, status: int) -> None:
        """The entry of a call that committed nothing with it, in its own transaction."""
        if draft.route is None or draft.closed:
            return
        again = draft.written

        async def entry(db: AsyncSession) -> None:
            await self.stage(db, draft, outcome, status, again=again)

        try:
            await self._alone.run(entry)
        except Exception as exc:
            # The answer goes out all the same; the log says which entry is missing.
            log.warning(
                "audit_write_failed",
                route=draft.scope.get("path"),
                outcome=outcome,
                error_type=type(exc).__name__,
            )

    async def _claim(
        self,
        db: AsyncSession,
        key_id: str,
        address: str,
        method: str,
        route: str,
        request_id: str,
    ) -> None:
        now = utcnow()
        if await AuditRepository(db).claim_pair(key_id, address, now):
            # Staged like the call's own entry, and before it: the first use keeps the lower id.
            _stage_entry(
                db,
                at=now,
                key_id=key_id,
                address=address,
                action=FIRST_USE,
                method=method,
                route=clean(route),
                request_id=request_id,
                outcome=OK,
            )
        on_commit(db, lambda: self._seen.add((key_id, address)), key=("seen", key_id, address))

    async def page(
        self, db: AsyncSession, filters: AuditFilters, params: PageParams
    ) -> tuple[list[AuditEntry], int]:
        rows, total = await AuditRepository(db).page(filters, params)
        return [_to_schema(row) for row in rows], total

    @staticmethod
    def prunable(cutoff: datetime) -> Prune:
        """The entries older than `cutoff` (db/batches.py)."""
        return Prune([AuditRow.id], [AuditRow.at < cutoff])

    async def prune_pairs(self, db: AsyncSession, cutoff: datetime) -> None:
        """The seen pairs of keys that are gone, and those first seen before `cutoff`."""
        await AuditRepository(db).prune_pairs(cutoff)
