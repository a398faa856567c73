"""`openwa serve` freezes what is alive once it serves and collects young objects less
often: a full collection walked the 200,000 start-up objects, 80 ms each time."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import uvicorn

from openwa.cli import _GC_YOUNG_THRESHOLD, _Server


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that serves nothing: only the server's start-up is under test."""


class _Watched(_Server):
    """The server, saying when its start-up (the freeze included) is over."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.up.set()


async def test_a_started_server_has_frozen_its_start_up_objects() -> None:
    threshold = gc.get_threshold()
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = _Watched(config)
    survivor: list[object] = []  # alive before the server starts: frozen with the rest
    gc.unfreeze()
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.up.wait(), 30)  # only against a hang
        assert server.started
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(survivor)
        assert not any(survivor is o for o in gc.get_objects()), (
            "an object alive at start-up is still walked by the collector"
        )
        assert gc.get_threshold() == (_GC_YOUNG_THRESHOLD, *threshold[1:])
        # What is made later is collected as before.
        made_later: list[object] = []
        made_later.append(made_later)
        assert any(made_later is o for o in gc.get_objects())
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()
        gc.set_threshold(*threshold)
