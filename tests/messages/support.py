"""Helpers shared by the message tests (not a test module)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from openwa.db.models import MessageRow, OutboxJobRow, SetAsideReportRow
from openwa.engines.base import EngineEvent, MessageReceived, OutgoingMessage
from openwa.events.bus import Subscription
from openwa.events.types import Event
from tests.fixtures.app import ADMIN_KEY, Api, wait_for

MESSAGE_ID_RE = re.compile(r"^3EB0[0-9A-F]{20}$")
USER_SUFFIX = "@s.whatsapp.net"


def error_of(response: httpx.Response, status: int, code: str, case: object = None) -> Any:
    """Assert the contract's error envelope with `status` and `code`; return `error`."""
    assert response.status_code == status, (case, response.text)
    body = response.json()
    assert body["success"] is False, (case, body)
    assert body["error"]["code"] == code, (case, body)
    assert set(body["meta"]) >= {"timestamp", "requestId"}
    return body["error"]


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


async def post_text(
    api: Api,
    session: str,
    chat_id: str,
    text: str,
    *,
    key: str | None = ADMIN_KEY,
    idempotency_key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return await api.request(
        "POST",
        f"/api/sessions/{session}/messages/text",
        key=key,
        headers=headers,
        json={"chatId": chat_id, "text": text, **extra},
    )


async def send_text(api: Api, session: str, chat_id: str, text: str, **extra: Any) -> Any:
    """Send and assert the 202 answer; the accepted message."""
    return data_of(await post_text(api, session, chat_id, text, **extra), 202)


async def get_message(api: Api, session: str, message_id: str) -> Any:
    return data_of(await api.request("GET", f"/api/sessions/{session}/messages/{message_id}"))


async def wait_message(
    api: Api, session: str, message_id: str, status: str, timeout: float = 10.0
) -> Any:
    return await wait_for(
        lambda: get_message(api, session, message_id),
        lambda m: m["status"] == status,
        timeout,
        f"message {message_id} {status}",
    )


SENT_OR_LATER = ("sent", "delivered", "read", "played")


async def wait_sent(api: Api, session: str, message_id: str, timeout: float = 10.0) -> Any:
    """Wait until the engine has taken the message (acks may already have moved it on)."""
    return await wait_for(
        lambda: get_message(api, session, message_id),
        lambda m: m["status"] in SENT_OR_LATER,
        timeout,
        f"message {message_id} sent",
    )


async def transmitted(api: Api, session: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = data_of(
        await api.request("GET", f"/api/sessions/{session}/mock/transmitted")
    )
    return items


def transmitted_ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["messageId"] for item in items]


async def ready_session(api: Api, name: str, **body: Any) -> dict[str, Any]:
    """Create a mock session, wait for `ready`; the session with its phone number."""
    await api.create_session(name, **body)
    session = await api.wait_status(name, "ready")
    assert session["phoneNumber"], session
    return session


async def ready_pair(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = await asyncio.gather(ready_session(api, "alice"), ready_session(api, "bob"))
    return a, b


def plus(session: dict[str, Any]) -> str:
    """The session's phone number in international form, as a client would type it."""
    return "+" + session["phoneNumber"]


def address(session: dict[str, Any]) -> str:
    return f"{session['phoneNumber']}{USER_SUFFIX}"


class Recorder:
    """Keeps every event a subscription hands out, so waiting for one loses none."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub
        self.events: list[Event] = []

    def matching(self, keep: Callable[[Event], bool]) -> list[Event]:
        return [event for event in self.events if keep(event)]

    async def wait(
        self, keep: Callable[[Event], bool], count: int = 1, timeout: float = 10.0
    ) -> list[Event]:
        """The first `count` events so far for which `keep` is true, in arrival order."""
        deadline = time.monotonic() + timeout
        while len(found := self.matching(keep)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                others = [(e.event, e.session_id) for e in self.events[-20:]]
                raise AssertionError(
                    f"timed out: {len(found)} of {count} events; have {[e.data for e in found]};"
                    f" of {len(self.events)} events recorded, the last: {others}"
                )
            try:
                self.events.append(await asyncio.wait_for(self._sub.get(), left))
            except TimeoutError:
                continue
        return found[:count]

    async def one(self, keep: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        return (await self.wait(keep, 1, timeout))[0]


@contextlib.asynccontextmanager
async def recording(api: Api) -> AsyncIterator[Recorder]:
    """Record the app's events from now on, for the length of the block."""
    sub = api.services.bus.subscribe()
    try:
        yield Recorder(sub)
    finally:
        sub.close()


def is_event(name: str, session_id: str, **data: Any) -> Callable[[Event], bool]:
    def check(event: Event) -> bool:
        return (
            event.event == name
            and event.session_id == session_id
            and all(event.data.get(k) == v for k, v in data.items())
        )

    return check


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def logged_statuses(events: list[dict[str, Any]], message_id: str) -> list[str]:
    """The statuses a message's `message.sent` and `message.ack` events record, in
    cursor order."""
    return [
        e["data"]["status"]
        for e in sorted(events, key=lambda e: e["cursor"])
        if e["event"] in ("message.sent", "message.ack") and e["data"].get("id") == message_id
    ]


async def stored_and_set_aside(api: Api, session_id: str) -> tuple[set[str], list[Any]]:
    """The ids of the session's stored messages, and every set-aside report."""
    async with api.services.db() as db:
        stored = set(
            (await db.execute(select(MessageRow.id).where(MessageRow.session_id == session_id)))
            .scalars()
            .all()
        )
        aside = list((await db.execute(select(SetAsideReportRow))).scalars().all())
    return stored, aside


class OneByOne:
    """A client as whatsmeow's: no `send_many`, no resend under our id; each send takes
    `delay_s` (a round trip to WhatsApp). Records which jobs were marked handed over
    when each send began."""

    resends_safely = False

    def __init__(self, inner: Any, delay_s: float, api: Api) -> None:
        self._inner = inner
        self._delay_s = delay_s
        self._api = api
        self.begun: list[str] = []
        self.begun_at: list[float] = []  # when each send began (monotonic)
        self.marked_at_send: list[set[str]] = []
        self.hang_at: int | None = None  # this send (from 0) hangs, as one WhatsApp never answers

    async def send(self, message: OutgoingMessage) -> str | None:
        self.begun.append(message.id)
        self.begun_at.append(time.monotonic())
        self.marked_at_send.append(await handed(self._api))
        await asyncio.sleep(60.0 if len(self.begun) - 1 == self.hang_at else self._delay_s)
        result: str | None = await self._inner.send(message)
        return result

    def __getattr__(self, name: str) -> Any:
        if name == "send_many":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def handed(api: Api) -> set[str]:
    """The message ids whose job is marked handed over (committed)."""
    async with api.services.db() as db:
        query = select(OutboxJobRow.message_id).where(OutboxJobRow.handed_at.is_not(None))
        return set((await db.execute(query)).scalars())


def one_by_one(api: Api, session_id: str, delay_s: float, *, safe: bool = False) -> OneByOne:
    """The session's client from now on takes messages one at a time, as whatsmeow does
    (start the app with `mock_engine_ids="own"`, so that it cannot resend safely), or
    as Baileys does (`safe`: it resends under our ids)."""
    runtime = api.services.runtime
    real: Callable[[str], Any] = runtime.client
    wrapped = OneByOne(real(session_id), delay_s, api)
    wrapped.resends_safely = safe

    def client(sid: str) -> Any:
        return wrapped if sid == session_id and real(sid) is not None else real(sid)

    runtime.client = client  # type: ignore[method-assign]
    return wrapped


INBOUND_CHAT = "4915112345678@s.whatsapp.net"


def received(n: int, **fields: Any) -> MessageReceived:
    values: dict[str, Any] = {
        "id": f"3EB0{n:020X}",
        "chat_id": INBOUND_CHAT,
        "sender": INBOUND_CHAT,
        "type": "text",
        "content": {"text": f"message {n}"},
        "timestamp": datetime.now(UTC),
    } | fields
    return MessageReceived(**values)


async def one_batch(api: Api, session_id: str, reports: list[EngineEvent]) -> None:
    """Queue the reports as an engine does, so the worker takes them as one run."""
    runtime = api.services.runtime
    running = runtime._running[session_id]
    async with runtime.lock(session_id):
        for report in reports:
            running.events.put_nowait(report)
