"""The engines' `AuthStore`, kept in our database so a device survives restarts.

In a cluster every write is fenced by the session's lease (`Fence`): an instance paused
past its lease, whose engine still holds the old connection's keys, must not write
them over those of the instance that took the session over (its messages would no
longer decrypt), nor clear them on a logout only it saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster.leases import LeaseLost
from openwa.db.models import EngineAuthRow
from openwa.db.sqlite_driver import off_the_loop
from openwa.engines.base import AuthNotOurs
from openwa.kit.clock import utcnow

# Raises `LeaseLost` unless this instance still owns the session, in the caller's
# transaction (`Ownership.confirm`); run last, just before the commit.
Fence = Callable[[AsyncSession], Awaitable[None]]


class DatabaseAuthStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        session_id: str,
        engine: str,
        fence: Fence | None = None,
    ) -> None:
        self._sessions = sessions
        self._session_id = session_id
        self._engine = engine
        self._fence = fence

    async def load(self) -> dict[str, Any] | None:
        async with self._sessions() as db:
            row = await db.get(EngineAuthRow, self._session_id)
            if row is None or row.engine != self._engine:
                return None
            return dict(row.data)

    async def save(self, data: dict[str, Any]) -> None:
        # An engine's auth state may be megabytes: written off SQLite's event loop.
        with off_the_loop():
            await self._save(data)

    async def _save(self, data: dict[str, Any]) -> None:
        async with self._sessions() as db, db.begin():
            row = await db.get(EngineAuthRow, self._session_id)
            if row is None:
                db.add(
                    EngineAuthRow(
                        session_id=self._session_id,
                        engine=self._engine,
                        data=data,
                        updated_at=utcnow(),
                    )
                )
            else:
                row.engine, row.data, row.updated_at = self._engine, data, utcnow()
            await self._fenced(db)

    async def clear(self) -> None:
        async with self._sessions() as db, db.begin():
            await db.execute(
                delete(EngineAuthRow).where(EngineAuthRow.session_id == self._session_id)
            )
            await self._fenced(db)

    async def _fenced(self, db: AsyncSession) -> None:
        if self._fence is not None:
            try:
                await self._fence(db)
            except LeaseLost as exc:
                raise AuthNotOurs(f"session {self._session_id} is owned elsewhere") from exc
