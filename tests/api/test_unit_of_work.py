"""One unit of work per request: it commits once, after the endpoint and before the
response; an endpoint that fails midway leaves nothing behind; a commit that fails
answers the contract's envelope (503 `NOT_READY`), never a 500, and writes nothing.

Transactions are counted from the writer engine's own BEGIN and COMMIT events, tagged
with the request id in the context that issued them, as tests/api/test_transactions.py
counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from openwa.api.context import request_id_var
from openwa.api.deps import DbDep, ServicesDep
from openwa.errors import EngineError
from openwa.keys.schemas import ApiKeyCreate
from openwa.webhooks.schemas import WebhookCreate
from tests.api.checks import assert_error, assert_ok, assert_page
from tests.fixtures.app import Api, AppFactory

HOOK = "http://127.0.0.1:9/hook"  # never called: these tests only store webhooks


@dataclass
class Writes:
    """BEGINs and COMMITs on the writer, by the request id they ran under."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def of(self, request_id: str) -> list[str]:
        return [what for what, rid in self.seen if rid == request_id]


@contextmanager
def watching(engine: AsyncEngine, *, fail_commit: bool = False) -> Iterator[Writes]:
    """Record the writer's BEGINs and COMMITs; with `fail_commit`, the first COMMIT of a
    request fails as a lost connection would (before the database commits anything)."""
    writes = Writes()
    armed = [fail_commit]

    def on_begin(_conn: Any) -> None:
        writes.seen.append(("begin", request_id_var.get(None)))

    def on_commit(_conn: Any) -> None:
        request_id = request_id_var.get(None)
        writes.seen.append(("commit", request_id))
        if armed[0] and request_id is not None:
            armed[0] = False
            # As when the connection is lost: the server drops the transaction (else the
            # pool would hand out a connection still inside it).
            _conn.connection.dbapi_connection.rollback()
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))

    target = engine.sync_engine
    event.listen(target, "begin", on_begin)
    event.listen(target, "commit", on_commit)
    try:
        yield writes
    finally:
        event.remove(target, "begin", on_begin)
        event.remove(target, "commit", on_commit)


async def test_a_request_writing_several_rows_commits_once(app_factory: AppFactory) -> None:
    async with app_factory.running(webhook_allow_private=True) as api:
        body = {
            "name": "one-commit",
            "autoStart": False,
            "config": {"webhooks": [{"url": HOOK}, {"url": HOOK, "events": ["message.received"]}]},
        }
        assert_page(await api.request("GET", "/api/sessions"))  # the key is cached from here
        with watching(api.services.db_engine) as writes:
            response = await api.request("POST", "/api/sessions", json=body)
        created = assert_ok(response, 201)
        # The session, two webhooks and the `session.status` event: one transaction.
        assert writes.of(response.headers["x-request-id"]) == ["begin", "commit"], writes.seen
        hooks, pagination = assert_page(
            await api.request("GET", f"/api/sessions/{created['id']}/webhooks")
        )
        assert pagination["total"] == 2, hooks
        # Committed before the response: the in-memory directory already has it.
        assert (await api.session("one-commit"))["id"] == created["id"]


async def test_a_request_failing_midway_leaves_no_rows(app_factory: AppFactory) -> None:
    async with app_factory.running(webhook_allow_private=True) as api:
        await _fail_midway(api)


async def _fail_midway(api: Api) -> None:
    async def half_written(services: ServicesDep, db: DbDep) -> None:
        await services.keys.create(db, ApiKeyCreate(name="half-written", role="viewer"))
        await services.webhooks.create(db, None, WebhookCreate(url=HOOK))
        await db.flush()  # both rows are in the database's transaction now
        raise EngineError("refused after the writes")

    api.app.add_api_route("/api/test/half-written", half_written, methods=["POST"])
    assert_page(await api.request("GET", "/api/sessions"))  # the key is cached from here
    with watching(api.services.db_engine) as writes:
        response = await api.request("POST", "/api/test/half-written")
    assert_error(response, 422, "ENGINE_ERROR")
    # The change's transaction is rolled back; the refusal's audit entry commits in the
    # audit's group transaction (its writer belongs to no request), before the answer.
    assert writes.of(response.headers["x-request-id"]) == ["begin"], writes.seen
    (entry,) = [
        e
        for e in assert_page(await api.request("GET", "/api/audit"))[0]
        if e["route"] == "/api/test/half-written"
    ]
    assert entry["outcome"] == "ENGINE_ERROR"

    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    assert "half-written" not in [key["name"] for key in keys]
    hooks, pagination = assert_page(await api.request("GET", "/api/webhooks"))
    assert pagination["total"] == 0, hooks


async def test_a_failed_commit_answers_503_and_writes_nothing(api: Api) -> None:
    assert_page(await api.request("GET", "/api/sessions"))  # the key is cached from here
    with watching(api.services.db_engine, fail_commit=True) as writes:
        response = await api.request(
            "POST", "/api/keys", json={"name": "never-stored", "role": "viewer"}
        )
    error = assert_error(response, 503, "NOT_READY")
    assert "commit" in error["message"]
    assert response.headers["retry-after"] == "1"
    # The failed commit, then the refusal's audit entry in the audit's group transaction.
    assert writes.of(response.headers["x-request-id"]) == ["begin", "commit"], writes.seen
    (entry,) = [
        e
        for e in assert_page(await api.request("GET", "/api/audit"))[0]
        if e["requestId"] == response.headers["x-request-id"]
    ]
    assert (entry["outcome"], entry["status"]) == ("NOT_READY", 503), entry

    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    assert "never-stored" not in [key["name"] for key in keys]
    # The writer is free again (the failed transaction was rolled back): the next
    # request commits.
    response = await api.request("POST", "/api/keys", json={"name": "stored", "role": "viewer"})
    assert_ok(response, 201)
    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    assert "stored" in [key["name"] for key in keys]


async def test_a_deleted_key_is_evicted_once_committed(api: Api) -> None:
    """The cache forgets a deleted key after the commit, before the response: the next
    request with it is refused, and no read in between can cache it again."""
    key = await api.new_key("viewer")
    assert_ok(await api.request("GET", "/api/sessions", key=key))  # now cached
    keys, _ = assert_page(await api.request("GET", "/api/keys"))
    [key_id] = [k["id"] for k in keys if k["name"] == "viewer key"]
    assert_ok(await api.request("DELETE", f"/api/keys/{key_id}"))
    assert_error(await api.request("GET", "/api/sessions", key=key), 401, "UNAUTHORIZED")


async def test_reads_take_no_write_transaction(api: Api) -> None:
    """List endpoints read on the reader and commit nothing; on SQLite none of them
    BEGINs on the writer (its BEGIN IMMEDIATE would queue every read behind the writes).
    On PostgreSQL the reader is the writer's pool."""
    session = await api.create_session("reader", autoStart=False)
    separate_reader = api.services.read_engine is not api.services.db_engine
    with watching(api.services.db_engine) as writes:
        for url in (
            "/api/keys",
            "/api/webhooks",
            f"/api/sessions/{session['id']}/chats",
            f"/api/sessions/{session['id']}/contacts",
        ):
            response = await api.request("GET", url)
            assert_page(response)
            seen = writes.of(response.headers["x-request-id"])
            assert "commit" not in seen, (url, writes.seen)
            if separate_reader:
                assert seen == [], (url, writes.seen)
