"""Queries on the sessions table. Repositories flush; the unit of work commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, select

from openwa.db.models import MediaTombstoneRow, SessionRow
from openwa.db.repository import Repository
from openwa.kit.names import is_session_id, name_problem

# A session whose delete has begun: its tombstone is there beside its row.
DELETING = exists().where(MediaTombstoneRow.session_id == SessionRow.id)


class SessionRepository(Repository[SessionRow]):
    model = SessionRow

    async def resolve(self, ref: str) -> SessionRow | None:
        """A session by id, or by name when `ref` is not an id; none whose delete has
        begun (a key scoped to it, an event filter naming it, found nothing the API
        shows)."""
        if is_session_id(ref):
            named = SessionRow.id == ref
        elif name_problem(ref) is not None:
            return None  # cannot be a name either (and may hold bytes a database refuses)
        else:
            named = SessionRow.name == ref
        result = await self.db.execute(select(SessionRow).where(named, ~DELETING))
        return result.scalar_one_or_none()

    async def ids(self, refs: Sequence[str]) -> dict[str, str]:
        """Map each given id or name to its session id; unknown ones are left out."""
        found: dict[str, str] = {}
        for ref in refs:
            row = await self.resolve(ref)
            if row is not None:
                found[ref] = row.id
        return found
