"""Every session's committed row, in memory: the hot reads answered without the database.

Resolving `{id}` in a path and `GET /api/sessions/{id}` run on every request; reading
them from the database cost two transactions each. The directory holds a detached copy
of each session row as last committed and is kept fresh by the unit of work: every
flush notes the session rows it wrote, and the commit (never a rollback) puts them
here. Nothing else writes the sessions table (there are no bulk UPDATEs of it), so on
one instance the copy is exact. With several instances, rows the others commit arrive
by `refresh`: at once when Redis carries their note (`cluster/sync.py`), within a poll
otherwise.

Copies are read-only by convention: callers that change a session load the row in
their own transaction, which flows back here when it commits.

A session whose delete has begun is not held, though its row is still there: its
tombstone (`media_tombstones`) is written first, and its rows are deleted after, a
batch at a time, before the row itself (`sessions/removal.py`). Rows with a tombstone
are left out of every read here, and the instance that deletes it drops it when the
tombstone commits (`hide`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction

from openwa.db.engine import on_commit, session_class
from openwa.db.models import SessionRow
from openwa.kit.clock import utcnow
from openwa.kit.names import is_session_id, name_problem
from openwa.kit.pagination import PageParams
from openwa.sessions.repository import DELETING

_COLUMNS = [attr.key for attr in inspect(SessionRow).column_attrs]
_CLOCK_WINDOW = timedelta(seconds=5)


def _copy(row: SessionRow) -> SessionRow:
    values: dict[str, Any] = {key: getattr(row, key) for key in _COLUMNS}
    values["config"] = dict(values["config"] or {})
    values["status_history"] = list(values["status_history"] or [])
    return SessionRow(**values)


class SessionDirectory:
    def __init__(self) -> None:
        self._by_id: dict[str, SessionRow] = {}
        self._by_name: dict[str, str] = {}
        # Rendered views of a committed row (the JSON of `GET /api/sessions/{id}`), by
        # session and variant; a commit of the row drops them.
        self._views: dict[str, dict[str, bytes]] = {}
        self._watched: type[Session] | None = None
        # Told the id of each session row this instance commits (to tell the others).
        self.on_change: Callable[[str], object] | None = None
        self._newest: datetime | None = None  # the latest `updated_at` held
        # Told the id of each session dropped, deleted here or by another instance:
        # what is kept in memory per session elsewhere goes with it.
        self._drop_listeners: list[Callable[[str], None]] = []
        # Sessions this instance began to delete whose row is still there: a commit
        # that writes the row meanwhile does not bring it back.
        self._hidden: set[str] = set()

    def add_drop_listener(self, listener: Callable[[str], None]) -> None:
        self._drop_listeners.append(listener)

    async def load(self, db: async_sessionmaker[AsyncSession]) -> None:
        """Read every session once, at start; afterwards commits keep the copy fresh."""
        async with db() as session:
            rows = (await session.execute(select(SessionRow).where(~DELETING))).scalars().all()
        self._by_id.clear()
        self._by_name.clear()
        self._views.clear()
        for row in rows:
            self._put(row)  # detached once the session closed: nobody else holds them

    async def refresh(
        self, db: async_sessionmaker[AsyncSession], session_ids: Collection[str] | None = None
    ) -> None:
        """Take rows other instances committed: the named ones, or (None) every row
        changed lately, and drop the ones deleted. A row this instance put after the read
        began is never dropped by it (it was not there to be read), unless its delete
        has begun (a tombstone beside it: ids are never reused)."""
        began = utcnow()
        deleting = DELETING.label("deleting")
        async with db() as session:
            query = select(SessionRow, deleting)
            if session_ids is not None:
                query = query.where(SessionRow.id.in_(list(session_ids)))
            elif self._newest is not None:
                # Clocks of instances differ a little: re-read a window before the newest.
                query = query.where(SessionRow.updated_at > self._newest - _CLOCK_WINDOW)
            found = (await session.execute(query)).all()
            if session_ids is None:
                ids = (await session.execute(select(SessionRow.id, deleting))).all()
        rows = [row for row, being_deleted in found if not being_deleted]
        for row in rows:
            self._put(row)
        looked_at = set(session_ids) if session_ids is not None else set(self._by_id)
        if session_ids is None:
            present = {session_id for session_id, being_deleted in ids if not being_deleted}
            gone = {session_id for session_id, being_deleted in ids if being_deleted}
        else:
            present = {row.id for row in rows}
            gone = {row.id for row, being_deleted in found if being_deleted}
        for session_id in looked_at - present:
            held = self._by_id.get(session_id)
            if held is not None and (session_id in gone or held.updated_at < began - _CLOCK_WINDOW):
                self._drop(session_id)

    def get(self, session_id: str) -> SessionRow | None:
        return self._by_id.get(session_id)

    def view(self, row: SessionRow, variant: str, render: Callable[[SessionRow], bytes]) -> bytes:
        """`render(row)` made once per committed row and variant: a session is read far
        more often than it changes, and rendering it was most of a GET's own cost."""
        views = self._views.get(row.id)
        if views is not None and (cached := views.get(variant)) is not None:
            return cached
        rendered = render(row)
        if self._by_id.get(row.id) is row:  # not a copy a later commit has replaced
            self._views.setdefault(row.id, {})[variant] = rendered
        return rendered

    def resolve(self, ref: str) -> SessionRow | None:
        """A session by id, or by name when `ref` is not an id."""
        if is_session_id(ref):
            return self._by_id.get(ref)
        if name_problem(ref) is not None:
            return None
        session_id = self._by_name.get(ref)
        return self._by_id.get(session_id) if session_id is not None else None

    def page(self, params: PageParams, only: Sequence[str] | None) -> tuple[list[SessionRow], int]:
        rows = self._by_id.values()
        if only is not None:
            allowed = set(only)
            rows = [row for row in rows if row.id in allowed]  # type: ignore[assignment]
        ordered = sorted(rows, key=lambda row: (row.created_at, row.id))
        return ordered[params.offset : params.offset + params.limit], len(ordered)

    def to_restore(self) -> list[str]:
        """Ids of the sessions that should run (they were running when the server stopped)."""
        return sorted(row.id for row in self._by_id.values() if row.should_run)

    def with_status(self, status: str) -> set[str]:
        return {row.id for row in self._by_id.values() if row.status == status}

    def counts_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._by_id.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def hide(self, db: AsyncSession, session_id: str) -> None:
        """Drop the session once `db`'s transaction commits (it writes the session's
        tombstone: its delete has begun) and keep it out until its row is deleted; the
        other instances are told, as of any change of the row."""

        def hidden() -> None:
            self._hidden.add(session_id)
            self._drop(session_id)
            if self.on_change is not None:
                self.on_change(session_id)

        on_commit(db, hidden, key=(self, "hide", session_id))

    def _put(self, row: SessionRow) -> None:
        """Keep `row`, which the caller hands over: no unit of work may hold it."""
        if row.id in self._hidden:
            return  # its delete has begun
        old = self._by_id.get(row.id)
        if old is not None and old.updated_at > row.updated_at:
            return  # an older commit that reached us late
        if old is not None and old.name != row.name:
            self._by_name.pop(old.name, None)
        self._views.pop(row.id, None)
        self._by_id[row.id] = row
        self._by_name[row.name] = row.id
        if self._newest is None or row.updated_at > self._newest:
            self._newest = row.updated_at

    def _drop(self, session_id: str) -> None:
        old = self._by_id.pop(session_id, None)
        if old is not None:
            self._by_name.pop(old.name, None)
        self._views.pop(session_id, None)
        for listener in self._drop_listeners:
            listener(session_id)

    def watch(self, db: async_sessionmaker[AsyncSession]) -> None:
        """Follow commits of session rows made through `db`'s units of work."""
        self._watched = session_class(db)
        event.listen(self._watched, "after_flush", self._after_flush)

    def unwatch(self) -> None:
        watched = self._watched
        if watched is not None and event.contains(watched, "after_flush", self._after_flush):
            event.remove(watched, "after_flush", self._after_flush)
        self._watched = None

    def _after_flush(self, session: Session, _flush: UOWTransaction) -> None:
        changed = [obj for obj in (*session.new, *session.dirty) if isinstance(obj, SessionRow)]
        deleted = [obj.id for obj in session.deleted if isinstance(obj, SessionRow)]
        if not changed and not deleted:
            return
        # Held by the after-commit hook: applied on commit, dropped with a rollback.
        pending = on_commit(session, _Pending(self), key=self)
        for row in changed:
            pending.rows[row.id] = _copy(row)
        for session_id in deleted:
            pending.rows[session_id] = None


class _Pending:
    """Session rows written by one transaction, put in the directory once it commits."""

    def __init__(self, directory: SessionDirectory) -> None:
        self.directory = directory
        self.rows: dict[str, SessionRow | None] = {}

    def __call__(self) -> None:
        for session_id, row in self.rows.items():
            if row is None:
                self.directory._drop(session_id)
                self.directory._hidden.discard(session_id)
            else:
                self.directory._put(row)
            if self.directory.on_change is not None:
                self.directory.on_change(session_id)
