"""Which session states accept sends: on the way to `ready` they wait, otherwise 409."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from openwa.db.models import OutboxJobRow
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    error_of,
    get_message,
    is_event,
    plus,
    post_text,
    ready_session,
    recording,
    send_text,
    transmitted,
    transmitted_ids,
    wait_message,
    wait_sent,
)

# The self-linking case: long enough to send while the session links, short to wait for.
AUTH_DELAY_MS = 1000
NEVER_MS = 600_000


@pytest.fixture
async def linking_api(app_factory: AppFactory) -> AsyncIterator[Api]:
    async with app_factory.running(mock_auth_delay_ms=AUTH_DELAY_MS) as started:
        yield started


def not_ready(response: object, status: str) -> None:
    error = error_of(response, 409, "SESSION_NOT_READY", status)  # type: ignore[arg-type]
    assert error["message"]


async def test_sessions_not_on_their_way_to_ready_refuse_at_once(api: Api) -> None:
    created = await api.create_session("idle", autoStart=False)
    assert created["status"] == "created"
    not_ready(await post_text(api, "idle", "+62 812-3456-7890", "x"), "created")

    await ready_session(api, "stopping")
    assert (await api.request("POST", "/api/sessions/stopping/stop")).status_code == 200
    assert (await api.session("stopping"))["status"] == "stopped"
    not_ready(await post_text(api, "stopping", "+62 812-3456-7890", "x"), "stopped")

    await ready_session(api, "leaving")
    assert (await api.request("POST", "/api/sessions/leaving/logout")).status_code == 200
    not_ready(await post_text(api, "leaving", "+62 812-3456-7890", "x"), "logged out")

    # Nothing was queued for any of them.
    async with api.services.db() as db:
        assert await db.scalar(select(func.count()).select_from(OutboxJobRow)) == 0


async def test_failed_session_refuses_at_once(app_factory: AppFactory) -> None:
    # A session left out on restore (no room under MAX_SESSIONS) is `failed`.
    first, manager = await app_factory.start()
    try:
        await ready_session(first, "one")
        await ready_session(first, "two")
    finally:
        await AppFactory.stop(first, manager)

    api, manager = await app_factory.start(max_sessions=1)
    try:

        async def statuses() -> dict[str, str]:
            return {name: (await api.session(name))["status"] for name in ("one", "two")}

        found = await wait_for(
            statuses, lambda s: sorted(s.values()) == ["failed", "ready"], 10, "one failed"
        )
        failed = next(name for name, status in found.items() if status == "failed")
        not_ready(await post_text(api, failed, "+62 812-3456-7890", "x"), "failed")
    finally:
        await AppFactory.stop(api, manager)


async def test_session_waiting_for_scan_accepts_and_sends_once_linked(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("bob")
    await api.wait_status("bob", "qr_ready")
    assert (await api.request("POST", "/api/sessions/bob/mock/scan")).status_code == 200
    bob = await api.wait_status("bob", "ready")

    alice = await api.create_session("alice")
    assert alice["status"] in ("initializing", "qr_ready")
    message = await send_text(api, "alice", plus(bob), "sent once linked")
    assert message["status"] == "pending"
    await api.wait_status("alice", "qr_ready")
    assert (await get_message(api, "alice", message["id"]))["status"] == "pending"
    assert await transmitted(api, "alice") == []

    async with recording(api) as events:
        assert (await api.request("POST", "/api/sessions/alice/mock/scan")).status_code == 200
        await wait_sent(api, "alice", message["id"])
        received = await events.one(is_event("message.received", bob["id"]))
    assert received.data["id"] == message["id"]
    assert transmitted_ids(await transmitted(api, "alice")) == [message["id"]]


async def test_session_linking_by_itself_accepts_and_sends_when_ready(
    linking_api: Api,
) -> None:
    api = linking_api
    alice = await api.create_session("alice")
    assert alice["status"] in ("initializing", "qr_ready")
    message = await send_text(api, "alice", "+62 812-3456-7890", "after the link")
    assert message["status"] == "pending"
    sent = await wait_sent(api, "alice", message["id"], timeout=AUTH_DELAY_MS / 1000 + 8)
    assert sent["error"] is None
    history = [h["status"] for h in (await api.session("alice"))["statusHistory"]]
    assert history[-1] == "ready"
    assert transmitted_ids(await transmitted(api, "alice")) == [message["id"]]


async def test_send_fails_when_session_is_not_ready_in_time(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(send_ready_timeout_s=1, mock_auth_delay_ms=NEVER_MS)
    try:
        async with recording(api) as events:
            alice = await api.create_session("alice")
            await api.wait_status("alice", "qr_ready")
            message = await send_text(api, "alice", "+62 812-3456-7890", "too late")
            # The sweep runs every 5 s and fails jobs waiting longer than 1 s.
            failed = await wait_message(api, "alice", message["id"], "failed", timeout=12)
            assert "SESSION_NOT_READY" in failed["error"]
            ack = await events.one(is_event("message.ack", alice["id"], id=message["id"]), 5)
            assert ack.data["status"] == "failed"
            assert ack.data["chatId"] == "6281234567890@s.whatsapp.net"
            assert "SESSION_NOT_READY" in ack.data["error"]
            # Linking afterwards does not send it.
            assert (await api.request("POST", "/api/sessions/alice/mock/scan")).status_code == 200
            await api.wait_status("alice", "ready")
            marker = await send_text(api, "alice", "+62 812-3456-7890", "marker")
            await wait_sent(api, "alice", marker["id"])
            assert transmitted_ids(await transmitted(api, "alice")) == [marker["id"]]
            assert (await get_message(api, "alice", message["id"]))["status"] == "failed"
    finally:
        await AppFactory.stop(api, manager)
