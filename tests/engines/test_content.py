"""Typed outgoing content: every kind of send the API accepts goes from its stored row
to the engine and back without losing a field, and the mock transmits what it always
transmitted for it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from openwa.engines.base import OutgoingMessage
from openwa.engines.content import (
    Audio,
    ContactCard,
    Contacts,
    Document,
    Image,
    Location,
    MediaFile,
    Reaction,
    Reply,
    Sticker,
    Target,
    Text,
    UnknownContent,
    Video,
    Voice,
    from_stored,
    to_json,
)
from openwa.engines.whatsmeow.protocol import outgoing_from_wire, outgoing_wire
from openwa.messages.vcard import vcard
from tests.fixtures.app import Api
from tests.messages.support import (
    address,
    data_of,
    plus,
    ready_pair,
    send_text,
    transmitted,
    wait_sent,
)

ALICE = "15550101234@s.whatsapp.net"
MEDIA = {"key": "media/s/3EB0.png", "mimetype": "image/png", "size": 68}
CARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=15550109999:+15550109999\nEND:VCARD"

# (type, the content JSON as the accept path stores it, the typed content)
STORED: list[tuple[str, dict[str, Any], Any]] = [
    ("text", {"text": "hi"}, Text("hi")),
    (
        "text",
        {"text": "@bob hi", "replyTo": "3EB0AA", "mentions": [ALICE]},
        Text("@bob hi", Reply("3EB0AA"), (ALICE,)),
    ),
    ("image", {"caption": "look", "media": MEDIA}, Image(MediaFile(**MEDIA), "look")),
    (
        "video",
        {"replyTo": "3EB0AA", "media": MEDIA},
        Video(MediaFile(**MEDIA), reply_to=Reply("3EB0AA")),
    ),
    ("audio", {"media": MEDIA}, Audio(MediaFile(**MEDIA))),
    ("voice", {"media": MEDIA}, Voice(MediaFile(**MEDIA))),
    (
        "document",
        {"caption": "report", "media": {**MEDIA, "filename": "r.pdf"}},
        Document(MediaFile(**MEDIA, filename="r.pdf"), "report"),
    ),
    ("sticker", {"media": MEDIA}, Sticker(MediaFile(**MEDIA))),
    ("location", {"location": {"latitude": -6.2, "longitude": 106.8}}, Location(-6.2, 106.8)),
    (
        "location",
        {"location": {"latitude": 1.5, "longitude": 2.5, "name": "Monas", "address": "Jakarta"}},
        Location(1.5, 2.5, "Monas", "Jakarta"),
    ),
    (
        "contacts",
        {"contacts": [{"name": "Carol", "phoneNumber": "15550109999", "vcard": CARD}]},
        Contacts((ContactCard("Carol", "15550109999", CARD),)),
    ),
    ("reaction", {"messageId": "3EB0AA", "emoji": "👍"}, Reaction("3EB0AA", "👍")),
    ("reaction", {"messageId": "3EB0AA", "emoji": ""}, Reaction("3EB0AA", "")),
]


@pytest.mark.parametrize(("type_", "stored", "typed"), STORED)
def test_every_stored_type_round_trips(type_: str, stored: dict[str, Any], typed: Any) -> None:
    content = from_stored(type_, stored)
    assert content == typed
    assert content.kind == type_
    assert to_json(content) == stored
    message = OutgoingMessage("3EB0OURS", ALICE, content)
    assert message.type == type_
    # Across the process boundary to the whatsmeow worker and back: the same send.
    assert outgoing_from_wire(outgoing_wire(message)) == message


def test_what_the_sender_fills_in_crosses_to_the_engine() -> None:
    quoted = Text("re", Reply("ENGINE1", "the words", ALICE))
    assert to_json(quoted) == {
        "text": "re",
        "replyTo": "ENGINE1",
        "replyToText": "the words",
        "replyToSender": ALICE,
    }
    assert from_stored("text", to_json(quoted)) == quoted
    reaction = Reaction("ENGINE1", "❤️", Target(False, None))
    wire = to_json(reaction)
    assert wire == {
        "messageId": "ENGINE1",
        "emoji": "❤️",
        "targetFromMe": False,
        "targetSender": None,
    }
    assert from_stored("reaction", wire) == reaction


@pytest.mark.parametrize("type_", ["poll", "", "revoke"])
def test_a_type_no_engine_sends_is_refused(type_: str) -> None:
    with pytest.raises(UnknownContent):
        from_stored(type_, {"text": "x"})


async def test_the_mock_transmits_every_type_as_before(api: Api) -> None:
    """What the mock network carries for each kind of send, field by field: the stored
    content without its media, and what the sender adds for the engine (a quote's
    words and sender, whose message a reaction is for)."""
    alice, bob = await ready_pair(api)
    me = address(alice)
    first = await send_text(api, "alice", plus(bob), "first words")
    await wait_sent(api, "alice", first["id"])
    sends: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (
            "text",
            {"text": "@bob re", "replyTo": first["id"], "mentions": [plus(bob)]},
            {
                "text": "@bob re",
                "replyTo": first["id"],
                "replyToText": "first words",
                "replyToSender": me,
                "mentions": [address(bob)],
            },
        ),
        (
            "media",
            {
                "type": "image",
                "media": {"base64": base64.b64encode(b"\x89PNG").decode(), "mimetype": "image/png"},
                "caption": "look",
                "replyTo": first["id"],
            },
            {
                "caption": "look",
                "replyTo": first["id"],
                "replyToText": "first words",
                "replyToSender": me,
            },
        ),
        (
            "location",
            {"latitude": -6.2, "longitude": 106.8, "name": "Monas"},
            {"location": {"latitude": -6.2, "longitude": 106.8, "name": "Monas"}},
        ),
        (
            "contact",
            {"contacts": [{"name": "Carol", "phoneNumber": "+1 555 010 9999"}]},
            {
                "contacts": [
                    {
                        "name": "Carol",
                        "phoneNumber": "15550109999",
                        "vcard": vcard("Carol", "15550109999"),
                    }
                ]
            },
        ),
        (
            "reaction",
            {"messageId": first["id"], "emoji": "👍"},
            {"messageId": first["id"], "emoji": "👍", "targetFromMe": True, "targetSender": me},
        ),
    ]
    expected: dict[str, dict[str, Any]] = {}
    for route, body, carried in sends:
        if route != "reaction":
            body = {"chatId": plus(bob), **body}
        response = await api.request("POST", f"/api/sessions/alice/messages/{route}", json=body)
        sent = data_of(response, 202)
        await wait_sent(api, "alice", sent["id"])
        expected[sent["id"]] = carried
    log = {item["messageId"]: item for item in await transmitted(api, "alice")}
    for message_id, carried in expected.items():
        assert log[message_id]["content"] == carried, message_id
