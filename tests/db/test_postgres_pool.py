"""The PostgreSQL pool checks only connections that lay idle, and still never hands out
a dead one after an idle spell (a server restart, a dropped network)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from openwa.db import engine as engine_module
from openwa.db.engine import create_engine
from tests.fixtures.databases import terminate_backend

pytestmark = pytest.mark.postgres


async def test_a_connection_that_died_while_idle_is_replaced_not_used(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await terminate_backend(pid)
        # Every checked-in connection counts as idle from now on.
        monkeypatch.setattr(engine_module, "_PING_AFTER_IDLE_S", 0.0)
        async with engine.connect() as conn:
            again = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != pid
    finally:
        await engine.dispose()


async def test_a_connection_in_use_is_not_pinged_again(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    pings = 0
    original = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        nonlocal pings
        pings += 1
        return original(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    try:
        for _ in range(20):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert pings == 0
    finally:
        await engine.dispose()
