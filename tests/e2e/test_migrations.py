"""Schema migrations: up, down to nothing, and up again, on both databases."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.db import migrate, models  # noqa: F401  (models: registers every table)
from openwa.db.base import Base
from openwa.db.engine import create_engine

pytestmark = pytest.mark.e2e

CORE_TABLES = {"api_keys", "sessions", "engine_auth"}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names: list[str] = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names)


async def _version(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return [row[0] for row in result]


async def test_migrations_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    model_tables = set(Base.metadata.tables)
    assert model_tables >= CORE_TABLES
    engine = create_engine(empty_database_url)
    try:
        assert not (await _tables(engine)) & model_tables  # a fresh, empty database

        await migrate.upgrade(engine)
        assert await _tables(engine) >= model_tables
        assert await _version(engine) == [head]

        await migrate.upgrade(engine)  # at head already: nothing to do, no error
        assert await _version(engine) == [head]

        await migrate.downgrade(engine, "base")
        assert not (await _tables(engine)) & model_tables, await _tables(engine)
        assert await _version(engine) == []

        await migrate.upgrade(engine)
        assert await _tables(engine) >= model_tables
        assert await _version(engine) == [head]
    finally:
        await engine.dispose()


async def test_every_revision_steps_down_and_up(empty_database_url: str) -> None:
    """One revision at a time, so each downgrade undoes exactly its own upgrade."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    engine = create_engine(empty_database_url)
    try:
        for revision in revisions:
            await migrate.upgrade(engine, revision)
            assert await _version(engine) == [revision]
        for revision in reversed(revisions[:-1]):
            await migrate.downgrade(engine, "-1")
            assert await _version(engine) == [revision]
        await migrate.downgrade(engine, "-1")
        assert await _version(engine) == []
        await migrate.upgrade(engine)
        assert await _tables(engine) >= set(Base.metadata.tables)
        assert await _version(engine) == [revisions[-1]]
    finally:
        await engine.dispose()
