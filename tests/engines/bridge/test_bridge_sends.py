"""A send in flight when its bridge dies, through the whole engine (API, send worker,
runtime, bridge supervision), with a stand-in for the bridge program at the libraries'
edge (tests/engines/bridge/standin): Baileys sends under our id, so the send goes again
under the same id; whatsapp-web.js cannot, so it fails with SEND_OUTCOME_UNKNOWN."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.app import AppFactory
from tests.messages.support import get_message, send_text, wait_message

STANDIN = Path(__file__).parent / "standin"
PEER = "15550000002@s.whatsapp.net"


def sends(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("database_kind", ["sqlite"])
@pytest.mark.parametrize(("engine", "outcome"), [("baileys", "sent"), ("webjs", "failed")])
async def test_a_send_cut_short_by_a_dying_bridge(
    app_factory: AppFactory, standin: Path, tmp_path: Path, engine: str, outcome: str
) -> None:
    settings = {"node_binary": str(STANDIN / "node"), "node_bridge_dir": standin}
    async with app_factory.running(**settings) as api:
        session = await api.create_session(f"{engine}-sends", engine=engine)
        await api.wait_status(session["id"], "ready", timeout=20)
        accepted = await send_text(api, session["id"], PEER, "hello")
        message = await wait_message(api, session["id"], accepted["id"], outcome, timeout=30)
        log = sends(tmp_path / "sends.log")
        if engine == "baileys":
            # Sent again under the same id after the bridge came back: one message.
            assert log == [accepted["id"], accepted["id"]]
        else:
            assert log == [accepted["id"]]  # never repeated by itself
            assert message["errorCode"] == "SEND_OUTCOME_UNKNOWN", message
        again = await get_message(api, session["id"], accepted["id"])
        assert again["status"] == outcome
