"""An API process of its own, for the fencing test that pauses it (SIGSTOP): one
whatsmeow session on the real worker (Go's client a stand-in, `standin_worker`), the
worker fencing after `argv[1]` seconds. Each event the session gets is printed, one
line each (`Connected`, `Disconnected <reason>`, ...), and a `Disconnected` is answered
with a connect at once, as the runtime's reconnect would; until stdin closes.

Run as `python -m tests.engines.silent_owner FENCE_S DATA_DIR`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import structlog

from openwa.engines.base import Disconnected, EngineEvent
from openwa.engines.whatsmeow.engine import WhatsmeowEngine, WorkerProcess
from openwa.engines.whatsmeow.store import DeviceStore
from tests.engines.memory_session import Session


async def main(fence_after_s: float, data: Path) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: ours
    WorkerProcess.module = "tests.engines.standin_worker"
    engine = WhatsmeowEngine(DeviceStore(data), fence_after_s=fence_after_s)
    reconnects: set[asyncio.Task[None]] = set()

    def show(event: EngineEvent) -> None:
        reason = f" {event.reason}" if isinstance(event, Disconnected) else ""
        print(f"{type(event).__name__}{reason}", flush=True)
        if isinstance(event, Disconnected):
            task = asyncio.get_running_loop().create_task(client.connect())
            reconnects.add(task)
            task.add_done_callback(reconnects.discard)

    client = engine.client(Session("s1", show).context)
    await client.connect()
    await asyncio.to_thread(sys.stdin.read)
    await client.disconnect()
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), Path(sys.argv[2])))
