"""Calls on a session deleted under them answer 404 `SESSION_NOT_FOUND`, never 500.

A call looks its session up in memory, then writes rows that refer to it. A delete that
committed in between made the write break the foreign key: a send answered 500 and left
its media's bytes in storage, a start or restart queued behind the delete 500, a PATCH
carrying webhooks 500, a new webhook 503 "try again" (which could only find it gone).
On SQLite as on PostgreSQL: the look-up is outside the write's transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

import openwa.messages.service as messages_service
from openwa.db.models import OutboxJobRow
from openwa.sessions.runtime import SessionRuntime
from openwa.webhooks.service import WebhookService
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.media.support import b64, png
from tests.messages.support import error_of, ready_session

FAILSAFE_S = 30.0
OUTSIDER = "+1 555 0100 200"


def pause_after(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the first call of `owner.name` once it has returned, until let go."""
    reached, proceed = asyncio.Event(), asyncio.Event()
    original: Callable[..., Awaitable[Any]] = getattr(owner, name)

    async def pausing(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if not reached.is_set():
            reached.set()
            await proceed.wait()
        return result

    monkeypatch.setattr(owner, name, pausing)
    return reached, proceed


async def deleted_during(
    api: Api, session_id: str, call: Awaitable[httpx.Response], pause: tuple[asyncio.Event, ...]
) -> httpx.Response:
    """`call`'s answer when the session is deleted (and the delete answered) while the
    call is held between its look-up and its write."""
    reached, proceed = pause
    calling = asyncio.ensure_future(call)
    try:
        await asyncio.wait_for(reached.wait(), FAILSAFE_S)
        deleted = await api.request("DELETE", f"/api/sessions/{session_id}")
        assert deleted.status_code == 200, deleted.text
    finally:
        proceed.set()
    return await calling


def media_files(api: Api, session_id: str) -> list[str]:
    root = api.settings.data_dir / "media" / session_id
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("idempotency_key", [None, "once"])
async def test_a_text_sent_as_its_session_is_deleted_is_404(
    api: Api, monkeypatch: pytest.MonkeyPatch, idempotency_key: str | None
) -> None:
    session = await ready_session(api, "alice")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    sending = api.request(
        "POST",
        f"/api/sessions/{session['id']}/messages/text",
        json={"chatId": OUTSIDER, "text": "to a session on its way out"},
        headers=headers,
    )
    pause = pause_after(monkeypatch, messages_service, "to_schema")
    answered = await deleted_during(api, session["id"], sending, pause)
    error_of(answered, 404, "SESSION_NOT_FOUND")


async def test_media_sent_as_its_session_is_deleted_is_404_and_its_bytes_go(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await ready_session(api, "alice")
    sending = api.request(
        "POST",
        f"/api/sessions/{session['id']}/messages/media",
        json={
            "chatId": OUTSIDER,
            "type": "image",
            "media": {"base64": b64(png()), "mimetype": "image/png"},
        },
    )
    pause = pause_after(monkeypatch, messages_service, "to_schema")
    sending_task = asyncio.ensure_future(sending)
    await asyncio.wait_for(pause[0].wait(), FAILSAFE_S)
    assert media_files(api, session["id"])  # stored before the message's row is written
    answered = await deleted_during(api, session["id"], sending_task, pause)
    error_of(answered, 404, "SESSION_NOT_FOUND")
    assert media_files(api, session["id"]) == []


@pytest.mark.parametrize("action", ["start", "restart"])
async def test_a_start_queued_behind_a_delete_is_404(
    api: Api, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """The delete holds the session's lock through the engine's logout; the start waits
    for the lock, then finds the session gone."""
    session = await ready_session(api, "alice")
    entered, proceed = asyncio.Event(), asyncio.Event()
    logout = SessionRuntime.logout

    async def held_logout(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await proceed.wait()
        return await logout(*args, **kwargs)

    monkeypatch.setattr(SessionRuntime, "logout", held_logout)
    deleting = asyncio.ensure_future(api.request("DELETE", f"/api/sessions/{session['id']}"))
    try:
        await asyncio.wait_for(entered.wait(), FAILSAFE_S)
        runtime = api.services.runtime
        lock = runtime.lock(session["id"])
        starting = asyncio.ensure_future(
            api.request("POST", f"/api/sessions/{session['id']}/{action}")
        )

        async def start_waits() -> bool:
            return bool(getattr(lock, "_waiters", None))

        await wait_for(start_waits, bool, FAILSAFE_S, "the start to wait for the lock")
    finally:
        proceed.set()
    assert (await deleting).status_code == 200
    error_of(await starting, 404, "SESSION_NOT_FOUND")


@pytest.mark.parametrize("call", ["PATCH with webhooks", "new webhook"])
async def test_webhooks_given_as_their_session_is_deleted_are_404(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    async with app_factory.running(webhook_allow_private=True) as api:
        session = await ready_session(api, "alice")
        hook = {"url": "http://127.0.0.1:9/hook"}
        path = f"/api/sessions/{session['id']}"
        calling = (
            api.request("PATCH", path, json={"config": {"webhooks": [hook]}})
            if call == "PATCH with webhooks"
            else api.request("POST", f"{path}/webhooks", json=hook)
        )
        pause = pause_after(monkeypatch, WebhookService, "prepare")
        answered = await deleted_during(api, session["id"], calling, pause)
        error_of(answered, 404, "SESSION_NOT_FOUND")


async def test_of_deletes_at_once_one_deletes_and_the_others_find_it_gone(api: Api) -> None:
    """Each DELETE waited for the session's lock, found the row gone, and answered 200
    all the same (five `deleted: true`, five audit entries of a delete)."""
    session = await ready_session(api, "doomed")
    answers = await asyncio.gather(
        *(api.request("DELETE", f"/api/sessions/{session['id']}") for _ in range(5))
    )
    codes = sorted(response.status_code for response in answers)
    assert codes == [200, 404, 404, 404, 404], [r.text for r in answers]
    for response in answers:
        if response.status_code == 404:
            error_of(response, 404, "SESSION_NOT_FOUND")


async def test_a_deleted_sessions_queued_sends_go_with_it(api: Api) -> None:
    """Nothing holds a send's job to its session: a deleted session's jobs stayed for
    good (and so did every job done), a row per message."""
    session = await ready_session(api, "leaving")
    later = {"chatId": "+15550001111", "text": "later", "sendAt": "2099-01-01T00:00:00Z"}
    for _ in range(3):
        response = await api.request(
            "POST", f"/api/sessions/{session['id']}/messages/text", json=later
        )
        assert response.status_code == 202, response.text
    assert await _jobs(api, session["id"]) == 3
    deleted = await api.request("DELETE", f"/api/sessions/{session['id']}")
    assert deleted.status_code == 200, deleted.text
    assert await _jobs(api, session["id"]) == 0


async def _jobs(api: Api, session_id: str) -> int:
    async with api.services.db() as db:
        found = await db.scalar(select(func.count()).where(OutboxJobRow.session_id == session_id))
    return int(found or 0)
