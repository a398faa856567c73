"""A send cut short by a crash or a stop, on an engine that cannot resend under our id
(whatsmeow; the mock with `MOCK_ENGINE_IDS=own`): it may have gone out under an id we
never learned, so it is not sent again but fails with `SEND_OUTCOME_UNKNOWN`. Under our
own ids (the mock's default) the same send goes again: recipients drop the duplicate.

The crash is set up as the sender leaves it: the job marked handed over, not done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from openwa.db.models import OutboxJobRow
from tests.fixtures.app import Api, AppFactory
from tests.messages.support import (
    get_message,
    plus,
    ready_pair,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)


async def cut_short(api: Api, to: str) -> Any:
    """A send to `to` as a crash leaves it: its job marked handed over, due, not done."""
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cut = await send_text(api, "alice", to, "cut short", sendAt=later)
    async with api.services.db() as db, db.begin():
        await db.execute(
            update(OutboxJobRow)
            .where(OutboxJobRow.message_id == cut["id"])
            .values(handed_at=datetime.now(UTC), due_at=datetime.now(UTC))
        )
    return cut


@pytest.mark.parametrize("engine_ids", ["own", "ours"])
async def test_a_send_handed_over_before_a_crash_is_never_sent_twice(
    app_factory: AppFactory, engine_ids: str
) -> None:
    async with app_factory.running(mock_engine_ids=engine_ids, mock_ack_delay_ms=0) as api:
        _alice, bob = await ready_pair(api)
        # A normal send on an engine that cannot resend safely is marked before it goes.
        first = await send_text(api, "alice", plus(bob), "first")
        await wait_sent(api, "alice", first["id"])
        async with api.services.db() as db:
            query = select(OutboxJobRow.handed_at).where(OutboxJobRow.message_id == first["id"])
            handed_at = (await db.execute(query)).scalar_one()
        assert (handed_at is not None) == (engine_ids == "own")

        cut = await cut_short(api, plus(bob))
        assert await api.services.sender.run_once() == 1
        message = await get_message(api, "alice", cut["id"])
        went = await transmitted(api, "alice")
        if engine_ids == "own":
            assert (message["status"], message["errorCode"]) == ("failed", "SEND_OUTCOME_UNKNOWN")
            assert len(went) == 1  # only the first: the cut-short send is not repeated
        else:
            assert message["status"] != "failed"
            assert transmitted_ids(went) == [first["id"], cut["id"]]


async def test_a_send_in_doubt_given_back_untried_stays_in_doubt(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that claims it but cannot try it (its session held back, or no longer ready,
    between the claim and the send) gives it back still in doubt: it then fails as in
    doubt rather than going out a second time."""
    async with app_factory.running(mock_engine_ids="own", mock_ack_delay_ms=0) as api:
        _alice, bob = await ready_pair(api)
        await api.services.sender.stop()  # only this test's runs claim
        cut = await cut_short(api, plus(bob))
        runtime = api.services.runtime
        sending = runtime.sending_sessions
        looks = 0

        def held_after_the_claim() -> set[str]:
            nonlocal looks
            looks += 1
            return sending() if looks == 1 else set()

        monkeypatch.setattr(runtime, "sending_sessions", held_after_the_claim)
        assert await api.services.sender.run_once() == 1
        monkeypatch.undo()
        async with api.services.db() as db:
            query = select(OutboxJobRow.handed_at).where(OutboxJobRow.message_id == cut["id"])
            assert (await db.execute(query)).scalar_one() is not None
        assert await api.services.sender.run_once() == 1
        message = await get_message(api, "alice", cut["id"])
        assert (message["status"], message["errorCode"]) == ("failed", "SEND_OUTCOME_UNKNOWN")
        assert await transmitted(api, "alice") == []
