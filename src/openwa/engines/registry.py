"""The engines this instance can run sessions on, by name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import structlog

from openwa.engines.base import Engine
from openwa.errors import NotSupported

log = structlog.get_logger(__name__)


class EngineRegistry:
    def __init__(self, engines: list[Engine], default: str) -> None:
        self._engines = {engine.name: engine for engine in engines}
        if default not in self._engines:
            raise ValueError(f"default engine {default!r} is not registered")
        self.default = default
        self._forgetting: set[asyncio.Task[None]] = set()
        self._closed = False

    def get(self, name: str) -> Engine:
        engine = self._engines.get(name)
        if engine is None:
            raise NotSupported(
                f"engine {name!r} is not available on this instance",
                details={
                    "engine": name,
                    "capability": "engine",
                    "available": sorted(self._engines),
                },
            )
        return engine

    def names(self) -> list[str]:
        return sorted(self._engines)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self._engines.values())

    def forget_deleted(self, session_id: str) -> None:
        """A session was deleted, here or on another instance (a drop listener of the
        session directory): every engine drops what it keeps for it, such as its place
        in a worker shard and a worker's client of it. The instance that deleted it did
        so already; one that ran it before it moved would otherwise keep it for life,
        counted against its workers' room."""
        if self._closed:
            return
        for engine in self._engines.values():
            task = asyncio.create_task(self._forget(engine, session_id))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

    @staticmethod
    async def _forget(engine: Engine, session_id: str) -> None:
        try:
            await engine.forget(session_id, None)
        except Exception:
            log.warning("engine_forget_failed", engine=engine.name, session_id=session_id)

    async def settled(self) -> None:
        """Wait for the forgets under way."""
        while self._forgetting:
            await asyncio.gather(*self._forgetting, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._forgetting):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._forgetting, return_exceptions=True)
        for engine in self._engines.values():
            await engine.close()
