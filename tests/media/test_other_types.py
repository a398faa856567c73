"""Location, contact cards (vCard 3.0), reactions and revokes between two mock sessions."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.fixtures.app import wait_for
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    data_of,
    error_of,
    get_message,
    jid,
    plus,
    post_json,
    ready_pair,
    wait_event,
    wait_sent,
)


async def test_location_arrives(media_apps: MediaApps, local_store: MediaStore) -> None:
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)
    body = {
        "chatId": plus(bob),
        "latitude": -6.2,
        "longitude": 106.816666,
        "name": "Monas",
        "address": "Gambir, Jakarta",
    }
    sent = data_of(await post_json(api, "alice", "location", body), 202)
    assert sent["type"] == "location"
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    assert event["data"]["type"] == "location"
    assert event["data"]["from"] == jid(alice)
    assert event["data"]["location"] == {
        "latitude": -6.2,
        "longitude": 106.816666,
        "name": "Monas",
        "address": "Gambir, Jakarta",
    }
    assert "media" not in event["data"]
    # Out of range coordinates are a validation error.
    for bad in ({"latitude": 91, "longitude": 0}, {"latitude": 0, "longitude": -180.5}):
        error_of(
            await post_json(api, "alice", "location", {"chatId": plus(bob), **bad}),
            400,
            "VALIDATION_ERROR",
            bad,
        )


def unfold(card: str) -> list[str]:
    lines = card.split("\r\n")
    # CRLF between lines, and no bare CR or LF anywhere else.
    assert all("\r" not in line and "\n" not in line for line in lines), card
    return lines


async def test_contact_cards_are_escaped_vcards(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    _, bob = await ready_pair(api)
    tricky = "Doe; John, Jr.\nCEO\\CTO\r\nEND:VCARD"
    body = {
        "chatId": plus(bob),
        "contacts": [
            {"name": tricky, "phoneNumber": "+62 812-3456-7890"},
            {"name": "Plain Name", "phoneNumber": "+1 (555) 0100-200"},
        ],
    }
    sent = data_of(await post_json(api, "alice", "contact", body), 202)
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    contacts = event["data"]["contacts"]
    assert [c["name"] for c in contacts] == [tricky, "Plain Name"]
    assert [c["phoneNumber"] for c in contacts] == ["6281234567890", "15550100200"]

    escaped = "Doe\\; John\\, Jr.\\nCEO\\\\CTO\\nEND:VCARD"
    assert unfold(contacts[0]["vcard"]) == [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"N:;{escaped};;;",
        f"FN:{escaped}",
        "TEL;type=CELL;type=VOICE;waid=6281234567890:+6281234567890",
        "END:VCARD",
    ]
    lines = unfold(contacts[1]["vcard"])
    assert lines[3] == "FN:Plain Name"
    assert lines[4] == "TEL;type=CELL;type=VOICE;waid=15550100200:+15550100200"
    # The name cannot end the card early: exactly one END line, the last.
    assert [line for line in unfold(contacts[0]["vcard"]) if line == "END:VCARD"] == ["END:VCARD"]
    # The sender's stored message has the same cards.
    stored = await get_message(api, "alice", sent["id"])
    assert stored["contacts"] == contacts


async def test_reaction_reaches_the_author(media_apps: MediaApps, local_store: MediaStore) -> None:
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)
    text = data_of(await post_json(api, "alice", "text", {"chatId": plus(bob), "text": "hi"}), 202)
    await wait_event(api, bob["id"], "message.received", id=text["id"])

    # Bob reacts to the message he received; Alice gets message.reaction.
    reaction = data_of(
        await post_json(api, "bob", "reaction", {"messageId": text["id"], "emoji": "👍"}), 202
    )
    assert reaction["type"] == "reaction"
    assert reaction["chatId"] == jid(alice)
    event = await wait_event(api, alice["id"], "message.reaction", messageId=text["id"], emoji="👍")
    assert event["data"]["from"] == jid(bob)
    assert event["data"]["chatId"] == jid(bob)

    # An empty emoji (removing the reaction) is accepted and arrives as such.
    data_of(await post_json(api, "bob", "reaction", {"messageId": text["id"], "emoji": ""}), 202)
    await wait_event(api, alice["id"], "message.reaction", messageId=text["id"], emoji="")

    # Alice may react to her own message too.
    data_of(await post_json(api, "alice", "reaction", {"messageId": text["id"], "emoji": "❤️"}), 202)
    await wait_event(api, bob["id"], "message.reaction", messageId=text["id"], emoji="❤️")

    # An unknown message id is 404 MESSAGE_NOT_FOUND.
    error_of(
        await post_json(api, "bob", "reaction", {"messageId": "3EB0" + "0" * 20, "emoji": "👍"}),
        404,
        "MESSAGE_NOT_FOUND",
    )
    # Bob's message id is unknown to a session that never saw it.
    other = data_of(
        await post_json(api, "bob", "text", {"chatId": "+1 555 0100 200", "text": "x"}), 202
    )
    error_of(
        await post_json(api, "alice", "reaction", {"messageId": other["id"], "emoji": "👍"}),
        404,
        "MESSAGE_NOT_FOUND",
    )


async def test_revoke_reaches_the_recipient(media_apps: MediaApps, local_store: MediaStore) -> None:
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)
    text = data_of(
        await post_json(api, "alice", "text", {"chatId": plus(bob), "text": "oops"}), 202
    )
    await wait_event(api, bob["id"], "message.received", id=text["id"])
    await wait_sent(api, "alice", text["id"])

    response = await api.request("DELETE", f"/api/sessions/alice/messages/{text['id']}")
    revoked = data_of(response)
    assert revoked["id"] == text["id"]

    event = await wait_event(api, bob["id"], "message.revoked", id=text["id"])
    assert event["data"]["chatId"] == jid(alice)
    at_bob = await get_message(api, "bob", text["id"])
    assert at_bob["revoked"] is True
    at_alice = await wait_for(
        lambda: get_message(api, "alice", text["id"]), lambda m: m["revoked"] is True, 10
    )
    assert at_alice["revoked"] is True

    # Bob cannot revoke Alice's message (it is not his own).
    response = await api.request("DELETE", f"/api/sessions/bob/messages/{text['id']}")
    assert response.status_code in (403, 409, 422), response.text
    # Unknown ids are 404.
    error_of(
        await api.request("DELETE", f"/api/sessions/alice/messages/3EB0{'0' * 20}"),
        404,
        "MESSAGE_NOT_FOUND",
    )


async def test_control_characters_in_message_ids_are_not_a_500(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """A NUL in a message id (path or body) is an unknown or invalid id, on every database."""
    api = await media_apps.start(local_store)
    await ready_pair(api)
    problems = []
    for message_id in ("\x00", "3EB0\x00AB", "a\x01b"):
        quoted = quote(message_id, safe="")
        for method, path, body in (
            (
                "POST",
                "/api/sessions/bob/messages/reaction",
                {"messageId": message_id, "emoji": "x"},
            ),
            ("GET", f"/api/sessions/bob/messages/{quoted}", None),
            ("DELETE", f"/api/sessions/bob/messages/{quoted}", None),
            ("GET", f"/api/sessions/bob/messages/{quoted}/media", None),
        ):
            try:
                status = (await api.request(method, path, json=body)).status_code
            except httpx.HTTPError:
                raise
            except Exception:  # the in-process app re-raises after answering 500
                status = 500
            if status not in (400, 404):
                problems.append((method, path, repr(message_id), status))
    assert problems == [], problems
