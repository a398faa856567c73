"""A Baileys session whose reports the database cannot keep up with is held back through
the whole engine: the runtime's flow closes at `ENGINE_REPORT_QUEUE_MAX`, the engine
tells its bridge `hold`, and `go on` once half are written; nothing reported is lost.

The bridge is the stand-in at the libraries' edge (`standin/bridge.py`), which reports
the messages and writes down each word it is told; the pause of the websocket itself is
tested in the bridge's own tests (`test/baileys.test.js`). The writer is stalled by
holding the session's lock, which every batch of reports takes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from openwa.db.models import MessageRow
from openwa.engines.bridge.engine import BridgeEngine
from tests.fixtures.app import AppFactory, wait_for

STANDIN = Path(__file__).parent / "standin"
BOUND = 5
MESSAGES = 40


def words(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_stalled_writer_holds_the_bridge_back_and_loses_nothing(
    app_factory: AppFactory, standin: Path, tmp_path: Path
) -> None:
    settings = {"node_binary": str(STANDIN / "node"), "node_bridge_dir": standin}
    holds = tmp_path / "holds.log"
    async with app_factory.running(engine_report_queue_max=BOUND, **settings) as api:
        session = await api.create_session("baileys-held", engine="baileys")
        await api.wait_status(session["id"], "ready", timeout=20)
        runtime = api.services.runtime
        async with runtime.lock(session["id"]):
            bridge = api.services.engines.get("baileys")
            assert isinstance(bridge, BridgeEngine)
            await bridge.request("standin_inbound", session=session["id"], count=MESSAGES)
            await wait_for(lambda: asyncio.sleep(0, words(holds)), lambda w: w == ["hold"])
            assert runtime.held_back == 1
        await wait_for(lambda: asyncio.sleep(0, words(holds)), lambda w: w == ["hold", "go on"])

        async def stored() -> int:
            async with api.services.db() as db:
                found = await db.scalar(
                    select(func.count())
                    .select_from(MessageRow)
                    .where(MessageRow.session_id == session["id"], MessageRow.from_me.is_(False))
                )
            return int(found or 0)

        assert await wait_for(stored, lambda n: n == MESSAGES) == MESSAGES
        assert runtime.held_back == 0
