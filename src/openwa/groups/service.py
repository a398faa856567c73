"""Group use cases (to be filled in: list, create, info, update, participants, invite, leave)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.engines.registry import EngineRegistry
from openwa.sessions.runtime import SessionRuntime


class GroupService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        runtime: SessionRuntime,
        engines: EngineRegistry,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._engines = engines
