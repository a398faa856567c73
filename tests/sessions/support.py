"""Helpers shared by the session tests (not a test module)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from openwa.db.models import EngineAuthRow
from openwa.events.bus import Subscription
from openwa.events.types import Event
from tests.fixtures.app import Api, wait_for

SESSION_ID_RE = re.compile(r"^ses_[0-9A-HJKMNP-TV-Z]{26}$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NORMAL_LIFE = ["created", "initializing", "qr_ready", "authenticated", "ready"]


def statuses(session: dict[str, Any]) -> list[str]:
    return [change["status"] for change in session["statusHistory"]]


def error_of(response: Any, status: int, code: str, case: object = None) -> dict[str, Any]:
    """Assert the contract's error envelope with `status` and `code`; return `error`.

    `case` names the input in assertion messages of table-driven tests.
    """
    assert response.status_code == status, (case, response.text)
    body = response.json()
    assert body["success"] is False, (case, body)
    assert body["error"]["code"] == code, (case, body)
    assert set(body["meta"]) >= {"timestamp", "requestId"}
    error: dict[str, Any] = body["error"]
    return error


def detail_fields(error: dict[str, Any]) -> list[str]:
    return [item["field"] for item in error["details"]]


async def wait_history(
    api: Api, ref: str, done: Callable[[list[str]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Wait until the session's statusHistory (as a list of statuses) satisfies `done`."""
    session: dict[str, Any] = await wait_for(
        lambda: api.session(ref), lambda s: done(statuses(s)), timeout, f"{ref} history"
    )
    return session


def ends_with(tail: list[str]) -> Callable[[list[str]], bool]:
    return lambda history: history[-len(tail) :] == tail


async def auth_rows(api: Api, session_id: str) -> list[EngineAuthRow]:
    async with api.services.db() as db:
        result = await db.execute(
            select(EngineAuthRow).where(EngineAuthRow.session_id == session_id)
        )
        return list(result.scalars())


async def next_event(
    sub: Subscription, done: Callable[[Event], bool], timeout: float = 10.0
) -> Event:
    """The next event on `sub` for which `done` is true; others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for an event")
        try:
            event = await asyncio.wait_for(sub.get(), left)
        except TimeoutError:
            raise AssertionError("timed out waiting for an event") from None
        if done(event):
            return event


async def collect_until(
    sub: Subscription,
    session_id: str,
    done: Callable[[Event], bool],
    timeout: float = 10.0,
) -> list[Event]:
    """The events of one session, up to and including the first for which `done` is true."""
    events: list[Event] = []

    def take(event: Event) -> bool:
        if event.session_id != session_id:
            return False
        events.append(event)
        return done(event)

    await next_event(sub, take, timeout)
    return events


def is_status(status: str) -> Callable[[Event], bool]:
    return lambda event: event.event == "session.status" and event.data["status"] == status
