"""The bare FastAPI app that core.py's HTTP rows are measured against, served alone.

`python benchmarks/baselines.py --port P --database-url URL` serves it on uvicorn with one
worker and uvicorn's defaults as installed (loop and HTTP parser chosen by "auto"), like
`openwa serve`, and no access log. Two routes and nothing else, so the ratio of OpenWA to
these is the cost of OpenWA's own work:

- `GET /const`: a constant envelope `{success, data, meta}` shaped like a session record
  (the HTTP stack alone: routing, JSON out).
- `POST /insert`: a `{chatId, text}` body validated by pydantic, one INSERT and COMMIT
  through SQLAlchemy Core on OpenWA's own engine factory (on SQLite: WAL,
  `synchronous=NORMAL`, `BEGIN IMMEDIATE`, one connection; on PostgreSQL: asyncpg, a pool
  of 10), answered 202 with an envelope: the floor of a durable accept.
- `POST /insert-raw`: the same through the driver alone, no SQLAlchemy: one aiosqlite
  connection (same pragmas; a lock keeps one `BEGIN IMMEDIATE ... COMMIT` at a time, or
  concurrent requests would share commits) or an asyncpg pool of 10 (each INSERT its own
  transaction). On this machine SQLAlchemy's async engine costs about 1.5 ms per
  transaction on SQLite (several thread hops), so this is the lower floor.
- `GET /health`, so the benchmark can wait for it like for OpenWA.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import asyncpg
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert

from openwa.db.engine import create_engine, sqlite_path

_METADATA = MetaData()
_ROWS = Table(
    "bench_insert",
    _METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chat_id", Text, nullable=False),
    Column("text", Text, nullable=False),
)

_SESSION = {
    "success": True,
    "data": {
        "id": "ses_0123456789abcdef",
        "name": "a",
        "engine": "mock",
        "status": "ready",
        "phoneNumber": "15550100200",
        "pushName": "Bench",
        "createdAt": "2026-01-01T00:00:00+00:00",
        "updatedAt": "2026-01-01T00:00:00+00:00",
        "config": {},
    },
    "meta": {"requestId": "req_0123456789abcdef", "timestamp": "2026-01-01T00:00:00+00:00"},
}


class TextBody(BaseModel):
    chatId: str
    text: str


class RawInsert:
    """One INSERT + COMMIT per call straight through aiosqlite or asyncpg."""

    def __init__(self, database_url: str) -> None:
        self._path = sqlite_path(database_url)
        self._dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        self._sqlite: aiosqlite.Connection | None = None
        self._pool: asyncpg.Pool[Any] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._path is None:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=10, max_size=10)
            return
        self._sqlite = await aiosqlite.connect(self._path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
            await self._sqlite.execute("PRAGMA " + pragma)

    async def insert(self, chat_id: str, text: str) -> None:
        sql = "INSERT INTO bench_insert (chat_id, text) VALUES "
        if self._pool is not None:
            await self._pool.execute(sql + "($1, $2)", chat_id, text)
            return
        assert self._sqlite is not None
        async with self._lock:
            await self._sqlite.execute("BEGIN IMMEDIATE")
            await self._sqlite.execute(sql + "(?, ?)", (chat_id, text))
            await self._sqlite.execute("COMMIT")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._sqlite is not None:
            await self._sqlite.close()


def create_app(database_url: str) -> FastAPI:
    engine = create_engine(database_url)
    raw = RawInsert(database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(_METADATA.create_all)
        await raw.open()
        yield
        await raw.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/const")
    async def const() -> dict[str, Any]:
        return _SESSION

    @app.post("/insert", status_code=202)
    async def insert_one(body: TextBody) -> dict[str, Any]:
        async with engine.begin() as conn:
            await conn.execute(insert(_ROWS).values(chat_id=body.chatId, text=body.text))
        return {"success": True, "data": {"chatId": body.chatId, "status": "pending"}}

    @app.post("/insert-raw", status_code=202)
    async def insert_raw(body: TextBody) -> dict[str, Any]:
        await raw.insert(body.chatId, body.text)
        return {"success": True, "data": {"chatId": body.chatId, "status": "pending"}}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.database_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
