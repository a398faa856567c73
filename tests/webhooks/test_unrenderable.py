"""What a receiver or an engine hands us that our libraries cannot write must not stop a
webhook's queue: it used to fail the delivery's lane, which took the delivery again at
once, posted it again and again with no attempt in its log, and held up every later
event of the webhook and session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from openwa.db.unit_of_work import unit_of_work
from openwa.events.types import Event
from openwa.kit import wire_json
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    all_succeeded,
    data_of,
    failed_for_good,
    inbound,
    read_request,
    ready_session,
    register,
    verifies,
    wait_deliveries,
)

HALF_AN_EMOJI = "half \ud83d of it"


def test_wire_json_writes_half_an_emoji_as_a_replacement_and_joins_split_pairs() -> None:
    value = {"text": HALF_AN_EMOJI, "pair": "\ud83d\ude00", "list": ["\udc00"], "n": 1}
    assert wire_json.dumps(value) == (
        '{"text":"half \ufffd of it","pair":"\U0001f600","list":["\ufffd"],"n":1}'.encode()
    )
    assert wire_json.dumps({"big": 2**70}) == b'{"big": 1180591620717411303424}'


async def test_an_event_holding_half_an_emoji_is_delivered(apps: Apps, receiver: Receiver) -> None:
    """A JavaScript engine's string may end inside a surrogate pair; the database keeps
    it, and the event goes out with U+FFFD in its place, signed, to every reader."""
    api = await apps.start()
    session = await ready_session(api)
    hook = await register(api, session["id"], receiver.url, events=["message.received"])
    event = Event("message.received", session["id"], "mock", {"text": HALF_AN_EMOJI})
    async with unit_of_work(api.services.db) as db:
        await api.services.events.append(db, [event])
    await inbound(api, session["id"], "the next one")
    await wait_deliveries(api, session["id"], hook["id"], all_succeeded(2))
    first, second = receiver.requests
    assert first.payload["data"]["text"] == "half \ufffd of it"
    assert second.payload["data"]["text"] == "the next one"
    assert verifies(hook["secret"], first)
    page = data_of(await api.request("GET", "/api/events", params={"after": 0, "limit": 100}))
    [logged] = [e for e in page["events"] if e["id"] == event.id]
    assert logged["data"]["text"] == "half \ufffd of it"


@contextlib.asynccontextmanager
async def _redirecting_to_bytes() -> AsyncIterator[str]:
    """A receiver whose every answer is a 302 to a `Location` that is not UTF-8."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/p?a=\xff\xfe\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("attempts", [2])
async def test_a_location_that_is_not_utf8_is_a_failed_attempt(apps: Apps, attempts: int) -> None:
    api = await apps.start(webhook_max_attempts=attempts)
    session = await ready_session(api)
    async with _redirecting_to_bytes() as url:
        hook = await register(api, session["id"], url, events=["message.received"])
        await inbound(api, session["id"], "where does this go")
        delivery = await failed_for_good(api, session["id"], hook["id"], url)
    assert delivery["attempts"] == attempts
    for attempt in delivery["log"]:
        assert attempt["statusCode"] == 302
        assert "redirect" in attempt["error"].lower()
        assert attempt["location"].startswith("http://127.0.0.1:9/p")
