"""Rows staged on a transaction (`stage_insert`) are written when it commits, a parent
table's before its children's whatever the order they were staged in, and are dropped
with a rollback."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import table_of
from openwa.db.engine import create_engine, create_session_factory, stage_insert
from openwa.db.models import MessageRow, SessionRow
from openwa.kit.clock import utcnow


def _session(session_id: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": session_id,
        "name": session_id,
        "engine": "mock",
        "status": "stopped",
        "status_history": [],
        "config": {},
        "should_run": False,
        "created_at": now,
        "updated_at": now,
    }


def _message(session_id: str, message_id: str, **extra: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "session_id": session_id,
        "id": message_id,
        "chat_id": "4915112345678@s.whatsapp.net",
        "from_me": True,
        "type": "text",
        "content": {"text": "hi"},
        "status": "pending",
        "timestamp": now,
        "created_at": now,
        "updated_at": now,
        **extra,
    }


async def _count(factory: Any, model: Any) -> int:
    async with factory() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_staged_rows_are_written_at_commit_parents_first(database_url: str) -> None:
    engine = create_engine(database_url)
    factory = create_session_factory(engine)
    try:
        async with factory() as db, db.begin():
            # The message (whose session_id references sessions) is staged first.
            stage_insert(db, table_of(MessageRow), _message("ses_a", "m1"))
            stage_insert(db, table_of(MessageRow), _message("ses_a", "m2", send_at=utcnow()))
            stage_insert(db, table_of(SessionRow), _session("ses_a"))
            # Not written yet: reads in the same transaction do not see staged rows.
            assert await db.scalar(select(func.count()).select_from(MessageRow)) == 0
        assert await _count(factory, SessionRow) == 1
        async with factory() as db:
            stored = await db.get(MessageRow, ("ses_a", "m2"))
            assert stored is not None
            assert stored.send_at is not None
        assert await _count(factory, MessageRow) == 2
    finally:
        await engine.dispose()


async def _fail_after_staging(db: AsyncSession, session_id: str) -> None:
    async with db.begin():
        stage_insert(db, table_of(SessionRow), _session(session_id))
        raise RuntimeError("the unit of work fails")


async def test_staged_rows_go_with_a_rollback(database_url: str) -> None:
    engine = create_engine(database_url)
    factory = create_session_factory(engine)
    try:
        async with factory() as db:
            with pytest.raises(RuntimeError):
                await _fail_after_staging(db, "ses_b")
        # The same session's next transaction does not carry them either, nor does one
        # after a close that neither committed nor rolled back.
        async with factory() as db:
            with pytest.raises(RuntimeError):
                await _fail_after_staging(db, "ses_c")
            await db.execute(select(1))
            stage_insert(db, table_of(SessionRow), _session("ses_e"))
            await db.close()
            async with db.begin():
                stage_insert(db, table_of(SessionRow), _session("ses_d"))
        async with factory() as db:
            names = set((await db.scalars(select(SessionRow.id))).all())
        assert names == {"ses_d"}
    finally:
        await engine.dispose()


async def test_json_the_standard_library_takes_is_stored_and_read(database_url: str) -> None:
    """Half an emoji (a lone surrogate, as an engine may report it) and an integer beyond
    64 bits: orjson refuses both. The integer is stored by the standard library, the
    half emoji as U+FFFD (kept as it came, it failed every API answer that showed it)."""
    engine = create_engine(database_url)
    factory = create_session_factory(engine)
    content = {"text": "cut \ud83d here", "big": 2**70, "nested": {"1": [1.5, None]}}
    try:
        async with factory() as db, db.begin():
            stage_insert(db, table_of(SessionRow), _session("ses_j"))
        async with factory() as db, db.begin():
            stage_insert(db, table_of(MessageRow), _message("ses_j", "m1", content=content))
        async with factory() as db:
            stored = await db.get(MessageRow, ("ses_j", "m1"))
            assert stored is not None
            assert stored.content == {**content, "text": "cut \ufffd here"}
    finally:
        await engine.dispose()
