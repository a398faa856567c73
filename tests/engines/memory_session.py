"""What the runtime gives an engine for one session, in memory: an auth store, and the
events the engine emits, kept in order (tests that drive an engine without the app)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from openwa.engines.base import EngineEvent, SessionContext
from tests.fixtures.app import wait_for


class Session:
    def __init__(
        self,
        session_id: str,
        on_event: Callable[[EngineEvent], None] | None = None,
        **config: Any,
    ) -> None:
        self.saved: dict[str, Any] | None = None
        self.events: list[EngineEvent] = []
        self.on_event = on_event
        self.context = SessionContext(session_id, self, self.emit, config)

    async def load(self) -> dict[str, Any] | None:
        return self.saved

    async def save(self, data: dict[str, Any]) -> None:
        self.saved = data

    async def clear(self) -> None:
        self.saved = None

    async def emit(self, event: EngineEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def of(self, kind: type[EngineEvent]) -> list[EngineEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    async def count(self, kind: type[EngineEvent], n: int, timeout: float, what: str) -> None:
        await wait_for(
            lambda: asyncio.sleep(0, len(self.of(kind))), lambda k: k >= n, timeout, what
        )
