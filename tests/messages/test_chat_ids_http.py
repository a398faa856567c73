"""Chat ids over HTTP: the server answers with the canonical form, or 400 INVALID_CHAT_ID."""

from __future__ import annotations

from sqlalchemy import func, select

from openwa.db.models import MessageRow, OutboxJobRow
from tests.fixtures.app import Api
from tests.messages.support import error_of, post_text, ready_session, send_text

VALID = {
    "+62 812-3456-7890": "6281234567890@s.whatsapp.net",
    "6281234567890": "6281234567890@s.whatsapp.net",
    "6281234567890@s.whatsapp.net": "6281234567890@s.whatsapp.net",
    "6281234567890@c.us": "6281234567890@s.whatsapp.net",
    "123456789-123456@g.us": "123456789-123456@g.us",
    "123456789012345@lid": "123456789012345@lid",
    "120363025246125486@newsletter": "120363025246125486@newsletter",
    "status@broadcast": "status@broadcast",
}

INVALID = [
    " ",
    "garbage",
    "hello",
    "62812345678ab",
    "+62 812 abc",
    "12",
    "12345",
    "1234567890123456789012",
    "abc@s.whatsapp.net",
    "abc-123@g.us",
    "12345abc@g.us",
    "foo@bar.com",
    "6281234567890@example.com",
]


async def test_chat_ids_are_normalised(api: Api) -> None:
    await ready_session(api, "alice")
    for raw, canonical in VALID.items():
        message = await send_text(api, "alice", raw, f"to {raw}")
        assert message["chatId"] == canonical, raw
        stored = await api.request("GET", f"/api/sessions/alice/messages/{message['id']}")
        assert stored.json()["data"]["chatId"] == canonical, raw


async def test_invalid_chat_ids_are_400(api: Api) -> None:
    await ready_session(api, "alice")
    for raw in INVALID:
        error = error_of(await post_text(api, "alice", raw, "x"), 400, "INVALID_CHAT_ID", raw)
        assert error["message"]
    # Nothing was stored or queued for any of them.
    async with api.services.db() as db:
        assert await db.scalar(select(func.count()).select_from(MessageRow)) == 0
        assert await db.scalar(select(func.count()).select_from(OutboxJobRow)) == 0


async def test_non_ascii_digits_do_not_pass_as_an_address(api: Api) -> None:
    # Arabic-Indic digits for 6281234567890: refused, or answered in the canonical form.
    await ready_session(api, "alice")
    response = await post_text(api, "alice", "٦٢٨١٢٣٤٥٦٧٨٩٠@c.us", "x")
    if response.status_code == 400:
        error_of(response, 400, "INVALID_CHAT_ID")
    else:
        assert response.status_code == 202, response.text
        assert response.json()["data"]["chatId"] == "6281234567890@s.whatsapp.net"


async def test_a_mention_longer_than_an_address_is_400_and_nothing_is_stored(api: Api) -> None:
    """A mention is an address: one padded to a megabyte was normalised (and kept whole
    by the chat-id cache) before the send was refused."""
    await ready_session(api, "alice")
    mention = " " * 4096 + "+6281234567890"
    response = await post_text(api, "alice", "+6281234567891", "hi", mentions=[mention])
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert error["details"]
    async with api.services.db() as db:
        assert await db.scalar(select(func.count()).select_from(MessageRow)) == 0
