"""Translation of the libraries' own event shapes (as the bridge forwards them) into the
engine port's events, both engines; recorded shapes under tests/fixtures/bridge_shapes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.base import (
    UNDECRYPTABLE,
    CallReceived,
    ChatUpdated,
    ContactsSeen,
    ContactUpdated,
    Disconnected,
    Failed,
    GroupUpdated,
    LoggedOut,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    QrUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.engines.bridge import baileys, webjs
from openwa.engines.bridge.groups import group_info

ME = "15550000001@s.whatsapp.net"
PEER = "15550000002@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
SHAPES = Path(__file__).resolve().parents[2] / "fixtures" / "bridge_shapes"


def upsert(message: dict[str, Any], **key: Any) -> dict[str, Any]:
    return {
        "type": "notify",
        "messages": [
            {
                "key": {"remoteJid": PEER, "fromMe": False, "id": "3EB0A1", **key},
                "message": message,
                "messageTimestamp": "1764770000",
                "pushName": "Peer",
            }
        ],
    }


def one(name: str, data: Any) -> Any:
    found = baileys.translate(name, data, ME)
    assert len(found) == 1, found
    return found[0]


def test_baileys_text_with_a_quote_and_mentions() -> None:
    message = {
        "extendedTextMessage": {
            "text": "hi @15550000003",
            "contextInfo": {
                "stanzaId": "3EB0QUOTED",
                "participant": PEER,
                "mentionedJid": ["15550000003:4@s.whatsapp.net"],
            },
        }
    }
    event = one("messages.upsert", upsert(message))
    assert isinstance(event, MessageReceived)
    assert (event.id, event.chat_id, event.sender, event.type) == ("3EB0A1", PEER, PEER, "text")
    assert event.content == {
        "text": "hi @15550000003",
        "replyTo": "3EB0QUOTED",
        "mentions": ["15550000003@s.whatsapp.net"],
    }
    assert event.push_name == "Peer"
    assert event.timestamp.year == 2025
    assert event.history is False


def test_baileys_group_message_names_its_participant_and_history_is_marked() -> None:
    data = upsert(
        {"conversation": "hello"}, remoteJid=GROUP, participant="15550000003:2@s.whatsapp.net"
    )
    data["type"] = "append"
    event = one("messages.upsert", data)
    assert isinstance(event, MessageReceived)
    assert (event.chat_id, event.sender, event.history) == (
        GROUP,
        "15550000003@s.whatsapp.net",
        True,
    )


LID = "8792385306797@lid"


def addressed(data: dict[str, Any], **addressing: str) -> dict[str, Any]:
    """An upsert with the stanza addresses the bridge read for its message."""
    return {**data, "addressing": {"3EB0A1": addressing}}


def lids_of(event: Any) -> tuple[Any, ...]:
    return (event.chat_id, event.chat_lid, event.sender, event.sender_lid)


def test_baileys_lid_senders_are_named_by_the_number_on_their_stanza() -> None:
    """Baileys 6.17.16 keys a LID-addressed message by the LID alone; the number
    WhatsApp wrote beside it on the stanza (read by the bridge) names the sender, the
    LID kept alongside, as whatsmeow's `SenderAlt` does."""
    text = {"conversation": "hi"}
    in_group = upsert(text, remoteJid=GROUP, participant="8792385306797:3@lid")
    event = one("messages.upsert", addressed(in_group, addressing_mode="lid", participant_pn=PEER))
    assert lids_of(event) == (GROUP, None, PEER, LID)
    direct = upsert(text, remoteJid=LID)
    event = one("messages.upsert", addressed(direct, addressing_mode="lid", sender_pn=PEER))
    assert lids_of(event) == (PEER, LID, PEER, LID)
    # addressed by number, the LID beside it
    event = one("messages.upsert", addressed(upsert(text), addressing_mode="pn", sender_lid=LID))
    assert lids_of(event) == (PEER, LID, PEER, LID)
    # ours, sent from the phone to a LID-addressed chat
    mine = upsert(text, remoteJid=LID, fromMe=True)
    for recipient in ("peer_recipient_pn", "recipient_pn"):
        event = one("messages.upsert", addressed(mine, **{recipient: PEER}))
        assert lids_of(event) == (PEER, LID, ME, None)
    # without addresses, or with ones that do not pair a LID with a number: as keyed
    assert lids_of(one("messages.upsert", direct)) == (LID, None, LID, None)
    odd_numbers = (
        {"sender_pn": "not a jid"},
        {"sender_pn": "1-2@g.us"},
        {"sender_pn": LID},
        {"sender_pn": "a@b@s.whatsapp.net"},
    )
    for odd in odd_numbers:
        assert lids_of(one("messages.upsert", addressed(direct, **odd))) == (LID, None, LID, None)
    assert lids_of(one("messages.upsert", {**direct, "addressing": ["x"]})) == (
        LID,
        None,
        LID,
        None,
    )
    # ours from the phone in a LID group: Baileys thinks someone else wrote it
    in_group = upsert(text, remoteJid=GROUP, participant="8792385306799@lid")
    event = one("messages.upsert", addressed(in_group, participant_pn=ME))
    assert (event.from_me, event.sender, event.sender_lid) == (True, ME, None)
    # a reaction by a LID-addressed member names the member by number too
    reaction = {"reactionMessage": {"key": {"id": "3EB0T"}, "text": "+"}}
    in_group = upsert(reaction, remoteJid=GROUP, participant=LID)
    event = one("messages.upsert", addressed(in_group, participant_pn=PEER))
    assert (event.chat_id, event.sender) == (GROUP, PEER)


@pytest.mark.parametrize(
    ("message", "kind", "content"),
    [
        (
            {"imageMessage": {"caption": "look", "mimetype": "image/jpeg"}},
            "image",
            {"caption": "look"},
        ),
        ({"audioMessage": {"ptt": True, "mimetype": "audio/ogg"}}, "voice", {}),
        (
            {"documentWithCaptionMessage": {"message": {"documentMessage": {"caption": "c"}}}},
            "document",
            {"caption": "c"},
        ),
        (
            {
                "locationMessage": {
                    "degreesLatitude": 52.5,
                    "degreesLongitude": 13.4,
                    "name": "Here",
                }
            },
            "location",
            {"location": {"latitude": 52.5, "longitude": 13.4, "name": "Here"}},
        ),
        (
            {"contactMessage": {"displayName": "Ann", "vcard": "TEL;waid=15550000009:+1"}},
            "contacts",
            {
                "contacts": [
                    {
                        "name": "Ann",
                        "vcard": "TEL;waid=15550000009:+1",
                        "phoneNumber": "15550000009",
                    }
                ]
            },
        ),
        (
            {
                "pollCreationMessageV3": {
                    "name": "Lunch?",
                    "options": [{"optionName": "yes"}, {"optionName": "no"}],
                    "selectableOptionsCount": 1,
                }
            },
            "poll",
            {"poll": {"question": "Lunch?", "options": ["yes", "no"], "selectableCount": 1}},
        ),
        ({"ephemeralMessage": {"message": {"conversation": "secret"}}}, "text", {"text": "secret"}),
    ],
)
def test_baileys_message_types(message: dict[str, Any], kind: str, content: dict[str, Any]) -> None:
    event = one("messages.upsert", upsert(message))
    assert isinstance(event, MessageReceived)
    assert event.type == kind
    got = {k: v for k, v in event.content.items() if k != "mediaError"}
    assert got == content
    assert ("mediaError" in event.content) == (kind in ("image", "voice", "document"))


def test_baileys_unknown_types_keep_their_name_and_plumbing_is_dropped() -> None:
    event = one("messages.upsert", upsert({"pinInChatMessage": {"type": 1}}))
    assert isinstance(event, MessageReceived)
    assert (event.type, event.raw_type) == ("unknown", "pinInChatMessage")
    assert (
        baileys.translate("messages.upsert", upsert({"senderKeyDistributionMessage": {}}), ME) == []
    )


def test_baileys_reactions_revokes_and_edits() -> None:
    reaction = one(
        "messages.upsert", upsert({"reactionMessage": {"key": {"id": "3EB0T"}, "text": "👍"}})
    )
    assert reaction == ReactionReceived("3EB0T", PEER, PEER, "👍")
    revoke = one(
        "messages.upsert", upsert({"protocolMessage": {"type": "REVOKE", "key": {"id": "3EB0T"}}})
    )
    assert revoke == MessageRevoked("3EB0T", PEER, PEER)
    edit = one(
        "messages.upsert",
        upsert(
            {
                "protocolMessage": {
                    "type": 14,
                    "key": {"id": "3EB0T"},
                    "editedMessage": {"conversation": "fixed"},
                    "timestampMs": "1764770001000",
                }
            }
        ),
    )
    assert isinstance(edit, MessageEdited)
    assert (edit.id, edit.text) == ("3EB0T", "fixed")
    separate = one(
        "messages.reaction",
        [
            {
                "key": {"remoteJid": PEER, "id": "3EB0T"},
                "reaction": {"key": {"remoteJid": PEER, "fromMe": True}, "text": ""},
            }
        ],
    )
    assert separate == ReactionReceived("3EB0T", PEER, ME, "")


def test_baileys_statuses_and_receipts() -> None:
    updates = baileys.translate(
        "messages.update",
        [
            {"key": {"remoteJid": PEER, "id": "M1", "fromMe": True}, "update": {"status": 3}},
            {"key": {"remoteJid": PEER, "id": "M2", "fromMe": True}, "update": {"status": "READ"}},
            {"key": {"remoteJid": PEER, "id": "M3", "fromMe": False}, "update": {"status": 4}},
            "not a dict",
        ],
        ME,
    )
    # M3 is a message we received, read on the phone: ours is read too.
    assert updates == [
        MessageAck("M1", PEER, "delivered"),
        MessageAck("M2", PEER, "read"),
        ReadBySelf(PEER, ["M3"]),
    ]
    receipt = one(
        "message-receipt.update",
        [
            {
                "key": {"remoteJid": GROUP, "id": "M4", "fromMe": True},
                "receipt": {"userJid": "15550000003@s.whatsapp.net", "readTimestamp": 1764770000},
            }
        ],
    )
    assert receipt == MessageAck("M4", GROUP, "read", by="15550000003@s.whatsapp.net")


def test_baileys_connection_updates() -> None:
    assert baileys.translate("connection.update", {"qr": "2@abc"}, None) == [QrUpdated("2@abc")]
    assert baileys.translate("connection.update", {"connection": "open"}, None) == [
        baileys.Opened()
    ]
    (closed,) = baileys.translate(
        "connection.update",
        {
            "connection": "close",
            "lastDisconnect": {"statusCode": 401, "message": "Connection Failure"},
        },
        None,
    )
    assert isinstance(closed, baileys.Closed)
    assert isinstance(baileys.closed_event(closed), LoggedOut)
    (lost,) = baileys.translate(
        "connection.update", {"connection": "close", "lastDisconnect": {"statusCode": 408}}, None
    )
    assert isinstance(lost, baileys.Closed)
    event = baileys.closed_event(lost)
    assert isinstance(event, Disconnected)
    assert "408" in event.reason
    # Closes reconnecting cannot mend (a ban, an outdated client, another client on the
    # device) end the session: they were drops, and the runtime logged in again and
    # again, which WhatsApp penalises.
    for status, code in [
        (402, "TEMPORARY_BAN"),
        (403, "FORBIDDEN"),
        (405, "CLIENT_OUTDATED"),
        (406, "BANNED"),
        (411, "MULTIDEVICE_MISMATCH"),
        (440, "STREAM_REPLACED"),
    ]:
        (closed,) = baileys.translate(
            "connection.update",
            {"connection": "close", "lastDisconnect": {"statusCode": status}},
            None,
        )
        assert isinstance(closed, baileys.Closed)
        ended = baileys.closed_event(closed)
        assert isinstance(ended, Failed), status
        assert ended.reason.startswith(code), ended
        assert str(status) in ended.reason


def test_baileys_groups_presence_calls_contacts() -> None:
    added = one(
        "group-participants.update",
        {"id": GROUP, "participants": [PEER], "action": "add", "author": ME},
    )
    assert added == GroupUpdated(GROUP, "add", [PEER], by=ME)
    subject = one("groups.update", [{"id": GROUP, "subject": "New"}])
    assert subject == GroupUpdated(GROUP, "subject", value="New")
    presence = one(
        "presence.update", {"id": PEER, "presences": {PEER: {"lastKnownPresence": "composing"}}}
    )
    assert presence == PresenceUpdated(PEER, PEER, "composing", None)
    call = one(
        "call",
        [
            {
                "id": "C1",
                "from": PEER,
                "status": "offer",
                "isVideo": True,
                "isGroup": False,
                "date": "2025-12-03T10:00:00.000Z",
            }
        ],
    )
    assert isinstance(call, CallReceived)
    assert (call.call_id, call.sender, call.is_video) == ("C1", PEER, True)
    contacts = baileys.translate(
        "contacts.upsert", [{"id": PEER, "notify": "Peer", "lid": "99999@lid"}], ME
    )
    assert contacts == [ContactUpdated(PEER, lid="99999@lid"), ContactsSeen({PEER: "Peer"})]


def test_group_metadata_of_both_libraries() -> None:
    info = group_info(
        {
            "id": GROUP,
            "subject": "Team",
            "owner": ME,
            "creation": 1764770000,
            "participants": [{"id": ME, "admin": "superadmin"}, {"id": PEER, "admin": None}],
            "announce": True,
        }
    )
    assert info.participants == [{"id": ME, "role": "superadmin"}, {"id": PEER, "role": "member"}]
    assert info.settings == {"announce": True, "restrict": False}
    webjs_info = group_info(
        {
            "id": {"_serialized": GROUP},
            "subject": "Team",
            "participants": [{"id": {"_serialized": "15550000002@c.us"}, "isAdmin": True}],
        }
    )
    assert webjs_info.participants == [{"id": PEER, "role": "admin"}]


def webjs_message(**fields: Any) -> dict[str, Any]:
    return {
        "id": {
            "fromMe": False,
            "remote": "15550000002@c.us",
            "id": "3EB0W1",
            "_serialized": "false_15550000002@c.us_3EB0W1",
        },
        "type": "chat",
        "body": "hello",
        "timestamp": 1764770000,
        "from": "15550000002@c.us",
        "to": "15550000001@c.us",
        "fromMe": False,
        "_data": {"notifyName": "Peer"},
        **fields,
    }


def test_webjs_messages_acks_and_lifecycle() -> None:
    (received,) = webjs.translate("message", [webjs_message()], None)
    assert isinstance(received, MessageReceived)
    assert (received.id, received.chat_id, received.sender, received.content) == (
        "3EB0W1",
        PEER,
        PEER,
        {"text": "hello"},
    )
    assert received.push_name == "Peer"
    assert webjs.translate("message_create", [webjs_message()], None) == []
    (ack,) = webjs.translate(
        "message_ack", [webjs_message(fromMe=True, to="15550000002@c.us"), 3], None
    )
    assert ack == MessageAck("3EB0W1", PEER, "read")
    (image,) = webjs.translate("message", [webjs_message(type="image", body="cap")], None)
    assert isinstance(image, MessageReceived)
    assert (image.type, image.content["caption"]) == ("image", "cap")
    assert webjs.translate("qr", ["2@xyz"], None) == [QrUpdated("2@xyz")]
    (ready,) = webjs.translate(
        "ready", [{"wid": {"_serialized": "15550000001@c.us"}, "pushname": "Me"}], None
    )
    assert ready == webjs.Ready(ME, "Me")
    assert isinstance(webjs.translate("disconnected", ["LOGOUT"], None)[0], LoggedOut)
    # Another client on the device, a ban, an outdated version: reconnecting cannot mend
    # them, and logging in again and again is what WhatsApp penalises.
    for state, code in [
        ("CONFLICT", "STREAM_REPLACED"),
        ("TOS_BLOCK", "BANNED"),
        ("SMB_TOS_BLOCK", "BANNED"),
        ("DEPRECATED_VERSION", "CLIENT_OUTDATED"),
    ]:
        (ended,) = webjs.translate("disconnected", [state], None)
        assert isinstance(ended, Failed), state
        assert ended.reason.startswith(code), ended
    # A proxy whose exit WhatsApp blocks may get another at the next dial.
    for state in ("NAVIGATION", "PROXYBLOCK"):
        assert isinstance(webjs.translate("disconnected", [state], None)[0], Disconnected)
    (failed,) = webjs.translate(
        "init_failed", [{"message": "net::ERR_TUNNEL_CONNECTION_FAILED"}], None
    )
    assert isinstance(failed, Disconnected)
    assert "ERR_TUNNEL" in failed.reason


def test_webjs_lid_senders_are_named_by_the_number_the_page_gave() -> None:
    """The bridge asks the page for the number behind a message's LIDs (`lids`); the
    sender and a direct chat come out by number, the LID alongside."""
    numbers = {"77@lid": "4915112345678@c.us"}
    phone = "4915112345678@s.whatsapp.net"
    direct = webjs_message(**{"from": "77@lid"})
    (event,) = webjs.translate("message", {"message": direct, "lids": numbers}, None)
    assert (event.chat_id, event.chat_lid, event.sender, event.sender_lid) == (
        phone,
        "77@lid",
        phone,
        "77@lid",
    )
    group = webjs_message(**{"from": "9@g.us", "author": "77@lid"})
    (event,) = webjs.translate("message", {"message": group, "lids": numbers}, None)
    assert (event.chat_id, event.chat_lid, event.sender, event.sender_lid) == (
        "9@g.us",
        None,
        phone,
        "77@lid",
    )
    mine = webjs_message(**{"fromMe": True, "to": "77@lid", "from": "111@c.us"})
    (event,) = webjs.translate("message_create", {"message": mine, "lids": numbers}, None)
    assert (event.chat_id, event.chat_lid) == (phone, "77@lid")
    odd_numbers = (
        None,
        ["x"],
        {"77@lid": "77@lid"},
        {"77@lid": 5},
        {"1@c.us": "2@c.us"},
        {"77@lid": "a@b@c.us"},
        {"x7@lid": "4915112345678@c.us"},
    )
    for odd in odd_numbers:
        (event,) = webjs.translate("message", {"message": direct, "lids": odd}, None)
        assert (event.chat_id, event.sender_lid) == ("77@lid", None)
    # a group member's number, asked about beside the events
    (mapped,) = webjs.translate("lid_mapping", {"lids": numbers}, None)
    assert mapped == ContactUpdated(phone, lid="77@lid")
    for odd in odd_numbers:
        assert webjs.translate("lid_mapping", {"lids": odd}, None) == []


def test_webjs_a_chat_read_on_the_phone_reads_what_came_since() -> None:
    chat = {"id": "15550000002@c.us", "unreadCount": 0}
    (event,) = webjs.translate("unread_count", {"chat": chat, "readIds": ["A1", "A2"]}, None)
    assert event == ReadBySelf(PEER, ["A1", "A2"])
    for odd in (
        {"chat": {**chat, "unreadCount": 2}, "readIds": ["A1"]},  # not read
        {"chat": chat, "readIds": []},
        {"chat": chat, "readIds": "A1"},
        {"chat": {"unreadCount": 0}, "readIds": ["A1"]},
        {"chat": chat},
    ):
        assert webjs.translate("unread_count", odd, None) == []


def test_webjs_history_the_bridge_read_off_the_page() -> None:
    chats = [
        {"id": "15550000002@c.us", "name": "Peer", "archived": True, "pinned": False},
        {"id": "15550000003@c.us", "name": "+1 (555) 000-0003", "isMuted": True},  # no name
        {"id": "120363000000000001@g.us", "name": "Team", "pinned": True},
        {"id": "15550000004@c.us", "name": "Plain"},  # nothing set: no event, its name kept
        {"id": None},
        "odd",
    ]
    found = webjs.translate("history", {"chats": chats, "messages": []}, None)
    assert found == [
        ChatUpdated(PEER, archived=True, pinned=False, muted=False),
        ChatUpdated("15550000003@s.whatsapp.net", archived=False, pinned=False, muted=True),
        ChatUpdated(GROUP, archived=False, pinned=True, muted=False),
        ContactsSeen({PEER: "Peer", "15550000004@s.whatsapp.net": "Plain"}),
    ]
    messages = [webjs_message(), {"id": "no id"}, "odd", webjs_message(_data=5)]
    found = webjs.translate("history", {"chats": "odd", "messages": messages}, None)
    assert [(type(e).__name__, e.history) for e in found] == [("MessageReceived", True)]
    image = webjs_message(type="image", hasMedia=True, body="")
    (event,) = webjs.translate("history", {"messages": [image]}, None)
    assert event.content["mediaError"] == "not downloaded: media from a history sync"
    assert webjs.translate("history", ["odd"], None) == []


def test_webjs_reactions_revokes_edits_groups_calls() -> None:
    (reaction,) = webjs.translate(
        "message_reaction",
        [
            {
                "msgId": {"id": "3EB0W1", "remote": "15550000002@c.us"},
                "senderId": "15550000002@c.us",
                "reaction": "❤",
            }
        ],
        None,
    )
    assert reaction == ReactionReceived("3EB0W1", PEER, PEER, "❤")
    (revoked,) = webjs.translate(
        "message_revoke_everyone", [webjs_message(type="revoked"), webjs_message()], None
    )
    assert isinstance(revoked, MessageRevoked)
    assert (revoked.id, revoked.chat_id) == ("3EB0W1", PEER)
    (edited,) = webjs.translate("message_edit", [webjs_message(), "new words", "hello"], None)
    assert isinstance(edited, MessageEdited)
    assert edited.text == "new words"
    (joined,) = webjs.translate(
        "group_join",
        [
            {
                "chatId": GROUP,
                "type": "add",
                "author": "15550000001@c.us",
                "recipientIds": ["15550000002@c.us"],
            }
        ],
        None,
    )
    assert joined == GroupUpdated(GROUP, "add", [PEER], by=ME)
    (call,) = webjs.translate(
        "call",
        [
            {
                "id": "C2",
                "from": "15550000002@c.us",
                "isVideo": False,
                "isGroup": False,
                "timestamp": 1764770000,
            }
        ],
        None,
    )
    assert isinstance(call, CallReceived)


@pytest.mark.parametrize("engine", ["baileys", "webjs"])
def test_every_recorded_shape_translates_without_error(engine: str) -> None:
    """The bridge's own recordings of the libraries' shapes (scripts/record-shapes.js)."""
    folder = SHAPES / engine
    files = sorted(folder.glob("*.json")) if folder.exists() else []
    if not files:
        pytest.skip(f"no recorded {engine} shapes")
    translate = baileys.translate if engine == "baileys" else webjs.translate
    for path in files:
        frame = json.loads(path.read_text())
        assert frame["v"] == 1
        found = [type(e).__name__ for e in translate(frame["name"], frame["data"], ME)]
        assert found == RECORDED.get(path.name, found), path.name


# What the recorded shapes must become (the others: whatever they give, without error).
# Baileys reports an edit twice (the message, then its own `messages.update`): the first
# is translated, the second left out so the edit is not announced twice.
RECORDED = {
    "messages.upsert.text.json": ["MessageReceived"],
    "messages.upsert.text-quote-mentions.json": ["MessageReceived"],
    "messages.upsert.edit.json": ["MessageEdited"],
    "messages.update.edit.json": [],
    "messages.upsert.revoke.json": ["MessageRevoked"],
    "messages.upsert.reaction.json": ["ReactionReceived"],
    "messages.upsert.group-lid.json": ["MessageReceived"],
    "messages.upsert.group-lid-addressed.json": ["MessageReceived"],
    "messages.update.read.json": ["MessageAck"],
    "message-receipt.update.group-read.json": ["MessageAck"],
    "connection.update.close-401.json": ["Closed"],
    "connection.update.open.json": ["Opened"],
    "connection.update.qr.json": ["QrUpdated"],
    "call.offer.json": ["CallReceived"],
    "message.chat.json": ["MessageReceived"],
    "message.image.json": ["MessageReceived"],
    "message_ack.3-read.json": ["MessageAck"],
    "message_create.from-me.json": ["MessageReceived"],
    "message_edit.json": ["MessageEdited"],
    "message_reaction.json": ["ReactionReceived"],
    "message_revoke_everyone.json": ["MessageRevoked"],
    "disconnected.LOGOUT.json": ["LoggedOut"],
    "disconnected.CONFLICT.json": ["Failed"],
    "init_failed.json": ["Disconnected"],
    "group_join.json": ["GroupUpdated"],
    "qr.json": ["QrUpdated"],
    "ready.json": ["Ready"],
    "vote_update.json": ["PollVoted"],
    "chats.phoneNumberShare.json": ["ContactUpdated"],
}


def test_webjs_media_the_bridge_fetched_or_why_not() -> None:
    image = webjs_message(type="image", body="cap")
    fetched = {"path": "/t/in-1", "size": 9, "mimetype": "image/jpeg", "filename": None}
    (got,) = webjs.translate("message", {"message": image, "media": fetched}, None)
    assert isinstance(got, MessageReceived)
    assert got.media is not None
    assert (got.media.path, got.media.size, got.media.mimetype) == (
        Path("/t/in-1"),
        9,
        "image/jpeg",
    )
    assert got.content == {"caption": "cap"}
    (failed,) = webjs.translate("message", {"message": image, "media": {"error": "gone"}}, None)
    assert isinstance(failed, MessageReceived)
    assert failed.media is None
    assert failed.content["mediaError"] == "download failed: gone"


def test_baileys_votes_it_decrypted_name_options_by_hash() -> None:
    """Baileys reports a vote it could decrypt as `pollUpdates`; the core names the
    options from the stored poll by their SHA-256 (PollVoted.option_hashes)."""
    yes = hashlib.sha256(b"yes").digest()
    update = {
        "key": {"remoteJid": GROUP, "id": "POLL1", "fromMe": True},
        "update": {
            "pollUpdates": [
                {
                    "pollUpdateMessageKey": {"remoteJid": GROUP, "participant": PEER, "id": "V1"},
                    "vote": {
                        "selectedOptions": [
                            {"type": "Buffer", "data": base64.b64encode(yes).decode()}
                        ]
                    },
                    "senderTimestampMs": 1764770000000,
                }
            ]
        },
    }
    (vote,) = baileys.translate("messages.update", [update], ME)
    assert vote == PollVoted("POLL1", GROUP, PEER, [], option_hashes=[yes.hex()])


def test_nobody_scanning_ends_in_qr_timeout_on_both() -> None:
    ended = {
        "connection": "close",
        "lastDisconnect": {"statusCode": 408, "message": "QR refs attempts ended"},
    }
    (failed,) = baileys.translate("connection.update", ended, None)
    assert isinstance(failed, Failed)
    assert failed.reason.startswith("QR_TIMEOUT")
    (gave_up,) = webjs.translate("disconnected", {"reason": "Max qrcode retries reached"}, None)
    assert gave_up == failed


def test_webjs_archives_join_requests_admin_changes_and_undecryptable_messages() -> None:
    (archived,) = webjs.translate(
        "chat_archived", {"chatId": "15550000002@c.us", "archived": True}, None
    )
    assert archived == ChatUpdated(PEER, archived=True)
    request = {"chatId": GROUP, "type": "membership_approval_request", "author": "15550000002@c.us"}
    (asked,) = webjs.translate("group_membership_request", {"notification": request}, None)
    assert asked == GroupUpdated(GROUP, "approval", [PEER], by=PEER)
    promoted = {
        "chatId": GROUP,
        "type": "promote",
        "author": "15550000002@c.us",
        "recipientIds": [ME],
    }
    (admin,) = webjs.translate("group_admin_changed", {"notification": promoted}, None)
    assert admin == GroupUpdated(GROUP, "promote", [ME], by=PEER)
    (hidden,) = webjs.translate(
        "message_ciphertext", {"message": webjs_message(type="ciphertext")}, None
    )
    assert isinstance(hidden, MessageReceived)
    assert (hidden.type, hidden.content) == (UNDECRYPTABLE, {"reason": "decryption_failed"})


def test_history_the_phone_still_has_unread_stays_unread_on_both_bridges() -> None:
    """The bridges name the history messages still unread on the phone (`unreadIds`);
    only inbound ones are taken, and odd values name none."""

    def baileys_info(message_id: str, from_me: bool = False) -> dict[str, Any]:
        info = upsert({"conversation": "x"}, id=message_id, fromMe=from_me)["messages"][0]
        return dict(info)

    infos = [baileys_info("B1"), baileys_info("B2"), baileys_info("B3", from_me=True)]
    frame = {"messages": infos, "unreadIds": ["B2", "B3", 7, None]}
    found = baileys.translate("messaging-history.set", frame, ME)
    assert [(e.id, e.history, e.unread) for e in found] == [
        ("B1", True, False),
        ("B2", True, True),
        ("B3", True, False),  # our own is never unread
    ]
    odd = baileys.translate("messaging-history.set", {**frame, "unreadIds": "B1"}, ME)
    assert [e.unread for e in odd] == [False, False, False]
    second = webjs_message(id={"id": "3EB0W2", "remote": "15550000002@c.us"})
    frame = {"messages": [webjs_message(), second], "unreadIds": ["3EB0W2"]}
    assert [(e.id, e.unread) for e in webjs.translate("history", frame, None)] == [
        ("3EB0W1", False),
        ("3EB0W2", True),
    ]
    # a live message is never marked: only history is
    live = webjs.translate("message", {"message": second, "unreadIds": ["3EB0W2"]}, None)
    assert [e.unread for e in live] == [False]
