"""whatsmeow holds back when the core is behind with a session's reports: the worker
stops taking events from Go (Go's thread waits, so whatsmeow would stop reading from
WhatsApp), and nothing held back is lost (`engines.flow`).

Built events go through the real worker process; `inject` hands each over from a thread,
as Go does, so an injection waits while the session is held. The writer is stalled by
holding the session's lock, which every batch of reports takes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from neonize import events as ev
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from sqlalchemy import func, select

from openwa.db.models import MessageRow
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import client_of, inject, linked, user_jid
from tests.fixtures.app import AppFactory, wait_for

BOUND = 3
MESSAGES = 40


def message(i: int) -> Any:
    source = neonize.MessageSource(Chat=user_jid("15550101111"), Sender=user_jid("15550101111"))
    info = neonize.MessageInfo(MessageSource=source, ID=f"HELD{i:04d}", Timestamp=1_764_000_000_000)
    return ev.MessageEv(Info=info, Message=wa.Message(conversation=f"held {i}"))


async def test_a_stalled_writer_holds_gos_reports_back_and_loses_none(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    async with app_factory.running(engine_type="whatsmeow", engine_report_queue_max=BOUND) as api:
        session_id = await linked(api, silent.url)
        runtime = api.services.runtime
        client = await client_of(api, session_id)
        injected = 0

        async def inject_all() -> None:
            nonlocal injected
            for i in range(MESSAGES):
                await inject(api, session_id, message(i))
                injected += 1

        async with runtime.lock(session_id):
            injecting = asyncio.create_task(inject_all())
            await wait_for(
                client.describe, lambda described: described["held"], 20, "the worker holding"
            )
            assert runtime.held_back == 1
            # Go's thread waits in the worker: the injection under way cannot end.
            assert not injecting.done()
            assert injected < MESSAGES
        await asyncio.wait_for(injecting, 60)

        async def stored() -> int:
            async with api.services.db() as db:
                found = await db.scalar(
                    select(func.count())
                    .select_from(MessageRow)
                    .where(MessageRow.session_id == session_id, MessageRow.from_me.is_(False))
                )
            return int(found or 0)

        assert await wait_for(stored, lambda n: n == MESSAGES, 30, "every message") == MESSAGES
        await wait_for(
            client.describe, lambda described: not described["held"], 20, "the worker going on"
        )
        assert runtime.held_back == 0
