"""Readiness: is each adapter usable right now?"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal

from sqlalchemy import text

from openwa.kit.redact import redact_text
from openwa.kit.schema import CamelModel
from openwa.kit.shared_call import SharedCall
from openwa.services import Services


class Liveness(CamelModel):
    status: Literal["ok"] = "ok"
    version: str


_CHECK_TIMEOUT_S = 3.0


async def _check(probe: Awaitable[object]) -> dict[str, str]:
    try:
        await asyncio.wait_for(probe, _CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {_CHECK_TIMEOUT_S:g}s"}
    except Exception as exc:
        # Unauthenticated callers read this: a driver's words may quote a URL's password.
        return {"status": "down", "error": redact_text(f"{type(exc).__name__}: {exc}")[:300]}
    return {"status": "up"}


async def _database(services: Services) -> None:
    async with services.db_engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _writable(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path, prefix=".health-")
    os.close(fd)
    os.unlink(name)


async def _storage(services: Services) -> None:
    await asyncio.to_thread(_writable, services.settings.data_dir)
    await services.storage.check()


async def _engines(services: Services) -> None:
    for engine in services.engines:
        await engine.check()


Checks = tuple[bool, dict[str, dict[str, str]]]

# A check's answer is reused this long: `/health/ready` is open to anyone, and each check
# writes to storage (on S3, a PUT and a DELETE) and asks every engine process.
READY_FRESH_S = 1.0


class SharedReadiness(SharedCall[Checks]):
    """Readiness checked at most once at a time and once a second: callers that come
    meanwhile share the check under way or the one just made."""

    def __init__(self, services: Services) -> None:
        super().__init__(lambda: readiness(services), lambda: READY_FRESH_S)


async def readiness(services: Services) -> Checks:
    database, cache, storage, engines = await asyncio.gather(
        _check(_database(services)),
        _check(services.cache.ping()),
        _check(_storage(services)),
        _check(_engines(services)),
    )
    # The durable queue is an outbox table in the same database: usable when it is.
    queue = dict(database)
    checks = {
        "database": database,
        "cache": cache,
        "queue": queue,
        "storage": storage,
        "engines": engines,
    }
    return all(c["status"] == "up" for c in checks.values()), checks
