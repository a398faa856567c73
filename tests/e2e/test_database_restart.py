"""PostgreSQL itself goes away and comes back: what the engines handed over meanwhile is
written once it is back, nothing set aside, nothing lost.

whatsmeow and whatsapp-web.js acknowledge a message to WhatsApp before they hand it to
the core, so the session's queue is its only copy: a run the database refuses while it
restarts (connections cut, then refused) must wait it out. The server here is the
test's own (`private_postgres`), stopped at once as a crash or a failover would, for
longer than the few quick tries that used to be all a run got.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tests.fixtures.app import AppFactory, wait_for
from tests.fixtures.private_postgres import PrivatePostgres
from tests.messages.support import (
    data_of,
    error_of,
    one_batch,
    plus,
    ready_pair,
    ready_session,
    received,
    send_text,
    stored_and_set_aside,
    wait_sent,
)
from tests.webhooks.conftest import FAST_WEBHOOKS
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import message_ids, register


async def test_a_postgresql_restart_loses_no_report_an_engine_handed_over(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    async with AppFactory(private_postgres.url, tmp_path / "data").running() as api:
        session = await ready_session(api, "alice")
        reports = [received(n) for n in range(1, 4)]
        with capture_logs() as logs:
            private_postgres.stop()
            # Handed over as whatsmeow does (acknowledged to WhatsApp already).
            await one_batch(api, session["id"], list(reports))
            await wait_for(
                lambda: _attempts(logs),
                lambda attempts: max(attempts, default=0) >= 6,  # 5 was all a run had
                timeout=60,
                what="the run tried again while the database is away",
            )
            private_postgres.start()
            _, aside = await wait_for(
                lambda: stored_and_set_aside(api, session["id"]),
                lambda found: found[0] >= {r.id for r in reports},
                timeout=60,
                what="the run written once the database is back",
            )
        assert aside == []
        assert not [
            e for e in logs if e["event"] in ("engine_report_lost", "engine_report_set_aside")
        ]
        shown = await api.request("GET", f"/api/sessions/{session['id']}/messages/{reports[0].id}")
        assert data_of(shown)["text"] == "message 1"


async def _attempts(logs: list[Any]) -> list[int]:
    return [e["attempt"] for e in logs if e["event"] == "engine_reports_retried"]


async def test_after_a_postgresql_restart_everything_goes_on(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """While the database is away a send is refused with 503 NOT_READY (no 500, nothing
    half-written); once it is back, without a restart of ours, a send is accepted, sent
    and announced, and its webhook delivered: no worker of ours died with the database.
    A send accepted just before it went away goes out too."""
    receiver = Receiver()
    await receiver.start()
    factory = AppFactory(private_postgres.url, tmp_path / "data")
    try:
        async with factory.running(**FAST_WEBHOOKS) as api:
            alice, bob = await ready_pair(api)
            await register(api, bob["id"], receiver.url, events=["message.received"])
            before = await send_text(api, alice["id"], plus(bob), "just before")
            private_postgres.stop()
            refused = await api.request(
                "POST",
                f"/api/sessions/{alice['id']}/messages/text",
                json={"chatId": plus(bob), "text": "while it is away"},
            )
            error_of(refused, 503, "NOT_READY")
            private_postgres.start()
            after = await wait_for(
                lambda: api.request(
                    "POST",
                    f"/api/sessions/{alice['id']}/messages/text",
                    json={"chatId": plus(bob), "text": "after"},
                ),
                lambda r: r.status_code == 202,
                timeout=30,
                what="a send accepted again",
            )
            sent = data_of(after, 202)
            for message in (before, sent):
                await wait_sent(api, alice["id"], message["id"], timeout=60)
            await wait_for(
                lambda: asyncio.sleep(0, set(message_ids(receiver.requests))),
                lambda ids: {before["id"], sent["id"]} <= ids,
                timeout=60,
                what="both messages delivered to Bob's webhook",
            )
    finally:
        await receiver.stop()
