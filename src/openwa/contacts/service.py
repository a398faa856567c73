"""Contact use cases (to be filled in: list, one, profile picture, check number)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.engines.registry import EngineRegistry
from openwa.sessions.runtime import SessionRuntime


class ContactService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        runtime: SessionRuntime,
        engines: EngineRegistry,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._engines = engines
