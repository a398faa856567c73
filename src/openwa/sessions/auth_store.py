"""The engines' `AuthStore`, kept in our database so a device survives restarts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import EngineAuthRow
from openwa.db.sqlite_driver import off_the_loop
from openwa.kit.clock import utcnow


class DatabaseAuthStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], session_id: str, engine: str
    ) -> None:
        self._sessions = sessions
        self._session_id = session_id
        self._engine = engine

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

    async def clear(self) -> None:
        async with self._sessions() as db, db.begin():
            await db.execute(
                delete(EngineAuthRow).where(EngineAuthRow.session_id == self._session_id)
            )
