"""How many transactions the hot paths cost: one per accepted send, none per session read.

Every BEGIN on the app's engines is recorded with the task that issued it and the
request id in its context. Background loops (send worker, delivery worker, pump) run in
tasks of their own, so they never count for a request; the group writer that commits
accepted sends runs in its own task too, and is counted for the send it carried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.api.context import request_id_var
from tests.fixtures.app import Api
from tests.messages.support import data_of, plus, post_text, ready_pair


@dataclass
class Begins:
    """BEGINs seen while recording: (engine role, task name, request id)."""

    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def of_request(self, request_id: str) -> list[str]:
        return [role for role, _task, rid in self.seen if rid == request_id]

    def of_task(self, prefix: str) -> list[str]:
        return [role for role, task, _rid in self.seen if task.startswith(prefix)]


@contextmanager
def recording(engines: dict[str, AsyncEngine]) -> Iterator[Begins]:
    begins = Begins()
    listeners: list[tuple[Any, Any]] = []
    for role, engine in engines.items():

        def on_begin(_conn: Any, role: str = role) -> None:
            task = asyncio.current_task()
            name = task.get_name() if task is not None else "-"
            begins.seen.append((role, name, request_id_var.get(None)))

        event.listen(engine.sync_engine, "begin", on_begin)
        listeners.append((engine.sync_engine, on_begin))
    try:
        yield begins
    finally:
        for target, fn in listeners:
            event.remove(target, "begin", fn)


def engines_of(api: Api) -> dict[str, AsyncEngine]:
    services = api.services
    engines = {"writer": services.db_engine}
    if services.read_engine is not services.db_engine:
        engines["reader"] = services.read_engine
    return engines


async def test_a_session_read_takes_no_transaction(api: Api) -> None:
    a, _b = await ready_pair(api)
    await api.session(a["id"])  # the key lookup is cached from here on
    with recording(engines_of(api)) as begins:
        for ref in (a["id"], a["name"]):
            response = await api.request("GET", f"/api/sessions/{ref}")
            assert response.status_code == 200, response.text
            request_id = response.headers["x-request-id"]
            assert begins.of_request(request_id) == [], begins.seen


async def test_an_accepted_send_is_one_transaction(api: Api) -> None:
    a, b = await ready_pair(api)
    await post_text(api, a["id"], plus(b), "warm up", sendAt="2099-01-01T00:00:00+00:00")
    for idempotency_key in (None, "order-1"):
        with recording(engines_of(api)) as begins:
            response = await post_text(
                api,
                a["id"],
                plus(b),
                "one commit",
                idempotency_key=idempotency_key,
                sendAt="2099-01-01T00:00:00+00:00",
            )
            data_of(response, 202)
        request_id = response.headers["x-request-id"]
        # The request itself reads nothing from the database (session and key from
        # memory); its unit of work is committed by the group writer, in one transaction.
        assert begins.of_request(request_id) == [], begins.seen
        assert begins.of_task("group-commit:accepts") == ["writer"], begins.seen
