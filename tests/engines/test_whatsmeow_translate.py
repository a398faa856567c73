"""The whatsmeow engine's translation layer, fed with neonize's own protobuf objects.

No client, no network: we build what neonize would hand us (events, messages, upload
results) and check the engine-port events and the WhatsApp messages we make of them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from neonize.events import (
    ConnectFailureEv,
    GroupInfoEv,
    HistorySyncEv,
    JoinedGroupEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    TemporaryBanEv,
)
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.proto.waHistorySync import WAWebProtobufsHistorySync_pb2 as hs
from neonize.proto.waWeb import WAWebProtobufsWeb_pb2 as web

from openwa.engines import content as sent
from openwa.engines.base import (
    Authenticated,
    ChatUpdated,
    Connected,
    ContactsSeen,
    Disconnected,
    Failed,
    GroupInfo,
    GroupUpdated,
    InboundMedia,
    LoggedOut,
    MessageAck,
    MessageReceived,
    MessageRevoked,
    OutgoingMessage,
    QrUpdated,
    ReactionReceived,
)
from openwa.engines.whatsmeow import history, notices, translate
from openwa.engines.whatsmeow.commands import CommandError, run_command
from openwa.engines.whatsmeow.go_maps import GoMapsLock
from openwa.engines.whatsmeow.protocol import (
    decode_event,
    decode_group,
    encode_event,
    encode_group,
    outgoing_wire,
    pack,
    read_frame,
)
from openwa.engines.whatsmeow.session_memory import SessionMemory
from openwa.engines.whatsmeow.translate import MediaRef
from openwa.engines.whatsmeow.worker_session import (
    WorkerSession,
    ban_reason,
    connect_failure,
    history_events,
    jid_from_text,
    jid_text,
)

ALICE = "6281111111111@s.whatsapp.net"
BOB = "6282222222222@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
COMMUNITY = "120363000000000009@g.us"
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Carol\nTEL;type=CELL;waid=6283333333333:+62 833\nEND:VCARD"

# ---------------------------------------------------------------------------------------
# Builders of what neonize hands us


def jid(text: str, device: int = 0) -> Any:
    """A complete neonize JID (every required field set) for `user@server`."""
    user, _, server = text.partition("@")
    return neonize.JID(User=user, Server=server, Device=device, Integrator=0, RawAgent=0)


def make_message(
    msg: Any,
    *,
    chat: str = ALICE,
    sender: str | None = None,
    sender_device: int = 0,
    from_me: bool = False,
    id: str = "3EB0AAAA",
    push_name: str = "",
    timestamp: int = 0,
) -> Any:
    """A neonize `MessageEv`; the sender defaults to the chat (a one-to-one chat)."""
    source = neonize.MessageSource(
        Chat=jid(chat),
        Sender=jid(sender or chat, sender_device),
        IsFromMe=from_me,
        IsGroup=chat.endswith("@g.us"),
    )
    info = neonize.MessageInfo(MessageSource=source, ID=id, Pushname=push_name, Timestamp=timestamp)
    return MessageEv(Info=info, Message=msg)


def received(msg: Any, **kwargs: Any) -> MessageReceived:
    inbound = translate.inbound_message(make_message(msg, **kwargs))
    assert inbound is not None
    assert isinstance(inbound.event, MessageReceived)
    return inbound.event


def upload() -> Any:
    return neonize.UploadResponse(
        url="https://mmg.whatsapp.net/x",
        DirectPath="/v/t62/x",
        MediaKey=b"key",
        FileEncSHA256=b"enc",
        FileSHA256=b"sha",
        FileLength=3,
    )


def fields_of(message: Any) -> list[str]:
    return [field.name for field, _ in message.ListFields()]


def serializable(message: Any) -> Any:
    """The message after a trip through its wire form (it must have one)."""
    parsed = wa.Message.FromString(message.SerializeToString())
    assert parsed == message
    return parsed


# ---------------------------------------------------------------------------------------
# Inbound messages


def test_conversation_is_a_text_message() -> None:
    event = received(wa.Message(conversation="hello"), id="ID1", push_name="Alice")
    assert event.id == "ID1"
    assert event.chat_id == ALICE
    assert event.sender == ALICE
    assert event.type == "text"
    assert event.content == {"text": "hello"}
    assert event.from_me is False
    assert event.push_name == "Alice"
    assert event.media is None


def test_missing_push_name_is_none() -> None:
    assert received(wa.Message(conversation="hi")).push_name is None


def test_extended_text_carries_reply_and_mentions() -> None:
    context = wa.ContextInfo(stanzaID="QUOTED1", mentionedJID=[BOB, ALICE])
    msg = wa.Message(
        extendedTextMessage=wa.ExtendedTextMessage(text="@bob look", contextInfo=context)
    )
    event = received(msg)
    assert event.type == "text"
    assert event.content == {"text": "@bob look", "replyTo": "QUOTED1", "mentions": [BOB, ALICE]}


def test_extended_text_without_context_is_plain_text() -> None:
    msg = wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text="link https://x.y"))
    assert received(msg).content == {"text": "link https://x.y"}


def media(field: str, **fields: Any) -> Any:
    """`wa.Message(imageMessage=wa.ImageMessage(**fields))` and the like."""
    cls = getattr(wa, field[0].upper() + field[1:])
    return wa.Message(**{field: cls(**fields)})


PDF = {"mimetype": "application/pdf", "fileName": "a.pdf"}


@pytest.mark.parametrize(
    ("msg", "kind", "content", "ref"),
    [
        (
            media("imageMessage", mimetype="image/jpeg", fileLength=1234, caption="a cat"),
            "image",
            {"caption": "a cat"},
            MediaRef("image/jpeg", 1234),
        ),
        (
            media("videoMessage", mimetype="video/mp4", fileLength=99, caption="clip"),
            "video",
            {"caption": "clip"},
            MediaRef("video/mp4", 99),
        ),
        (
            media("audioMessage", mimetype="audio/mpeg", fileLength=7),
            "audio",
            {},
            MediaRef("audio/mpeg", 7),
        ),
        (
            media("audioMessage", mimetype="audio/ogg", fileLength=8, PTT=True),
            "voice",
            {},
            MediaRef("audio/ogg", 8),
        ),
        (
            media("documentMessage", **PDF, fileLength=5, caption="doc"),
            "document",
            {"caption": "doc"},
            MediaRef("application/pdf", 5, "a.pdf"),
        ),
        (
            media("stickerMessage", mimetype="image/webp", fileLength=6),
            "sticker",
            {},
            MediaRef("image/webp", 6),
        ),
        (
            media("imageMessage", fileLength=1),
            "image",
            {},
            MediaRef("application/octet-stream", 1),
        ),
    ],
    ids=["image", "video", "audio", "voice", "document", "sticker", "no-mimetype"],
)
def test_media_messages(msg: Any, kind: str, content: dict[str, Any], ref: MediaRef) -> None:
    inbound = translate.inbound_message(make_message(msg))
    assert inbound is not None
    assert isinstance(inbound.event, MessageReceived)
    assert inbound.event.type == kind
    assert inbound.event.content == content
    assert inbound.media == ref


def test_media_reply_keeps_its_context() -> None:
    image = wa.ImageMessage(
        mimetype="image/png", fileLength=1, contextInfo=wa.ContextInfo(stanzaID="Q")
    )
    assert received(wa.Message(imageMessage=image)).content == {"replyTo": "Q"}


@pytest.mark.parametrize("wrapper", ["ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2"])
def test_wrapped_messages_are_unwrapped(wrapper: str) -> None:
    inner = wa.Message(imageMessage=wa.ImageMessage(mimetype="image/jpeg", fileLength=2))
    msg = wa.Message(**{wrapper: wa.FutureProofMessage(message=inner)})
    inbound = translate.inbound_message(make_message(msg))
    assert inbound is not None
    assert inbound.event.type == "image"  # type: ignore[union-attr]
    assert inbound.media == MediaRef("image/jpeg", 2)


def test_nested_wrappers_are_unwrapped() -> None:
    inner = wa.Message(conversation="secret")
    once = wa.Message(viewOnceMessage=wa.FutureProofMessage(message=inner))
    msg = wa.Message(ephemeralMessage=wa.FutureProofMessage(message=once))
    assert received(msg).content == {"text": "secret"}


def test_location_with_name_and_address() -> None:
    location = wa.LocationMessage(
        degreesLatitude=-6.2, degreesLongitude=106.8, name="Monas", address="Jakarta"
    )
    event = received(wa.Message(locationMessage=location))
    assert event.type == "location"
    assert event.content == {
        "location": {"latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"}
    }


def test_location_without_name() -> None:
    location = wa.LocationMessage(degreesLatitude=1.5, degreesLongitude=2.5)
    assert received(wa.Message(locationMessage=location)).content == {
        "location": {"latitude": 1.5, "longitude": 2.5}
    }


def test_contact_message_reads_the_waid() -> None:
    msg = wa.Message(contactMessage=wa.ContactMessage(displayName="Carol", vcard=VCARD))
    event = received(msg)
    assert event.type == "contacts"
    assert event.content == {
        "contacts": [{"name": "Carol", "vcard": VCARD, "phoneNumber": "6283333333333"}]
    }


def test_contacts_array_message() -> None:
    plain = "BEGIN:VCARD\nFN:Dave\nTEL:+1 555\nEND:VCARD"
    msg = wa.Message(
        contactsArrayMessage=wa.ContactsArrayMessage(
            displayName="2 contacts",
            contacts=[
                wa.ContactMessage(displayName="Carol", vcard=VCARD),
                wa.ContactMessage(displayName="Dave", vcard=plain),
            ],
        )
    )
    assert received(msg).content == {
        "contacts": [
            {"name": "Carol", "vcard": VCARD, "phoneNumber": "6283333333333"},
            {"name": "Dave", "vcard": plain},
        ]
    }


@pytest.mark.parametrize(("text", "emoji"), [("👍", "👍"), ("", "")], ids=["add", "remove"])
def test_reaction(text: str, emoji: str) -> None:
    key = MessageKey(remoteJID=GROUP, fromMe=True, ID="TARGET")
    msg = wa.Message(reactionMessage=wa.ReactionMessage(key=key, text=text))
    inbound = translate.inbound_message(make_message(msg, chat=GROUP, sender=BOB))
    assert inbound is not None
    assert inbound.event == ReactionReceived("TARGET", GROUP, BOB, emoji)
    assert inbound.media is None


def test_revoke() -> None:
    protocol = wa.ProtocolMessage(
        type=wa.ProtocolMessage.REVOKE, key=MessageKey(remoteJID=ALICE, ID="GONE")
    )
    inbound = translate.inbound_message(make_message(wa.Message(protocolMessage=protocol)))
    assert inbound is not None
    assert inbound.event == MessageRevoked("GONE", ALICE, ALICE)


@pytest.mark.parametrize(
    "msg",
    [
        wa.Message(
            protocolMessage=wa.ProtocolMessage(type=wa.ProtocolMessage.HISTORY_SYNC_NOTIFICATION)
        ),
        wa.Message(protocolMessage=wa.ProtocolMessage(type=wa.ProtocolMessage.REVOKE)),
        wa.Message(senderKeyDistributionMessage=wa.SenderKeyDistributionMessage(groupID=GROUP)),
        wa.Message(
            senderKeyDistributionMessage=wa.SenderKeyDistributionMessage(groupID=GROUP),
            messageContextInfo=wa.MessageContextInfo(messageSecret=b"s"),
        ),
        wa.Message(),
    ],
    ids=[
        "history-notice",
        "revoke-without-id",
        "sender-key",
        "sender-key-context",
        "empty",
    ],
)
def test_plumbing_is_not_a_message(msg: Any) -> None:
    assert translate.inbound_message(make_message(msg, chat=GROUP, sender=BOB)) is None


def test_group_sender_key_with_text_is_the_text() -> None:
    msg = wa.Message(
        senderKeyDistributionMessage=wa.SenderKeyDistributionMessage(groupID=GROUP),
        conversation="first in group",
    )
    assert received(msg, chat=GROUP, sender=BOB).content == {"text": "first in group"}


def test_unknown_content_type() -> None:
    order = wa.OrderMessage(orderID="O1")
    event = received(wa.Message(orderMessage=order))
    assert event.type == "unknown"
    assert event.content == {}
    assert event.raw_type == "orderMessage"


@pytest.mark.parametrize("extra", ["messageContextInfo", "senderKeyDistributionMessage"])
def test_unknown_content_type_ignores_plumbing_fields(extra: str) -> None:
    plumbing = {
        "messageContextInfo": wa.MessageContextInfo(messageSecret=b"s" * 32),
        "senderKeyDistributionMessage": wa.SenderKeyDistributionMessage(groupID=GROUP),
    }[extra]
    msg = wa.Message(orderMessage=wa.OrderMessage(orderID="O1"), **{extra: plumbing})
    event = received(msg, chat=GROUP, sender=BOB)
    assert (event.type, event.raw_type) == ("unknown", "orderMessage")


def test_group_message_chat_and_participant() -> None:
    event = received(wa.Message(conversation="hi all"), chat=GROUP, sender=BOB, sender_device=7)
    assert event.chat_id == GROUP
    assert event.sender == BOB  # the device part is dropped


def test_from_me_message() -> None:
    event = received(wa.Message(conversation="sent from phone"), sender=BOB, from_me=True)
    assert event.from_me is True
    assert event.chat_id == ALICE
    assert event.sender == BOB


def test_message_without_chat_is_dropped() -> None:
    ev = make_message(wa.Message(conversation="x"))
    ev.Info.MessageSource.Chat.CopyFrom(neonize.JID(User="", Server=""))
    assert translate.inbound_message(ev) is None


def test_missing_timestamp_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    stamp = received(wa.Message(conversation="x")).timestamp
    assert stamp.tzinfo is not None
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= datetime.now(UTC)


def test_timestamp_from_neonize_milliseconds() -> None:
    event = received(wa.Message(conversation="x"), timestamp=1_700_000_000_123)
    assert event.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# Receipts


def receipt(kind: int, ids: list[str], chat: str = ALICE) -> Any:
    source = neonize.MessageSource(Chat=jid(chat), Sender=jid(chat))
    return ReceiptEv(MessageSource=source, MessageIDs=ids, Type=kind)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (neonize.Receipt.DELIVERED, "delivered"),
        (neonize.Receipt.READ, "read"),
        (neonize.Receipt.PLAYED, "played"),
    ],
)
def test_receipt_acks(kind: int, status: str) -> None:
    assert notices.receipt_acks(receipt(kind, ["A", "B"], chat=GROUP)) == [
        MessageAck("A", GROUP, status),
        MessageAck("B", GROUP, status),
    ]


@pytest.mark.parametrize(
    "kind",
    [
        neonize.Receipt.READ_SELF,
        neonize.Receipt.PLAYED_SELF,
        neonize.Receipt.SENDER,
        neonize.Receipt.RETRY,
    ],
)
def test_other_receipts_give_nothing(kind: int) -> None:
    assert notices.receipt_acks(receipt(kind, ["A"])) == []


# ---------------------------------------------------------------------------------------
# Groups


def group_event(**changes: Any) -> Any:
    return GroupInfoEv(JID=jid(GROUP), Sender=jid(ALICE), **changes)


@pytest.mark.parametrize(
    ("changes", "action", "value"),
    [
        ({"Name": neonize.GroupName(Name="New name")}, "subject", "New name"),
        ({"Topic": neonize.GroupTopic(Topic="About")}, "description", "About"),
        ({"Topic": neonize.GroupTopic(Topic="x", TopicDeleted=True)}, "description", None),
        ({"Locked": neonize.GroupLocked(isLocked=True)}, "settings", None),
        ({"Announce": neonize.GroupAnnounce(IsAnnounce=False)}, "settings", None),
        (
            {"Ephemeral": neonize.GroupEphemeral(IsEphemeral=True, DisappearingTimer=86400)},
            "ephemeral",
            "86400",
        ),
        ({"Ephemeral": neonize.GroupEphemeral(IsEphemeral=False)}, "ephemeral", "0"),
        (
            {"NewInviteLink": "https://chat.whatsapp.com/AbC"},
            "invite_link",
            "https://chat.whatsapp.com/AbC",
        ),
        ({"Delete": neonize.GroupDelete(Deleted=True, DeletedReason="admin")}, "delete", "admin"),
        ({"Delete": neonize.GroupDelete(Deleted=True)}, "delete", None),
        (
            {"Link": neonize.GroupLinkChange(Group=neonize.GroupLinkTarget(JID=jid(COMMUNITY)))},
            "link",
            COMMUNITY,
        ),
        (
            {"Unlink": neonize.GroupLinkChange(Group=neonize.GroupLinkTarget(JID=jid(COMMUNITY)))},
            "unlink",
            COMMUNITY,
        ),
    ],
    ids=[
        "name",
        "topic",
        "topic-deleted",
        "locked",
        "announce",
        "ephemeral-on",
        "ephemeral-off",
        "invite-link",
        "delete",
        "delete-no-reason",
        "link",
        "unlink",
    ],
)
def test_group_metadata_updates(changes: dict[str, Any], action: str, value: str | None) -> None:
    assert notices.group_updates(group_event(**changes)) == [
        GroupUpdated(GROUP, action, by=ALICE, value=value)
    ]


@pytest.mark.parametrize(
    ("field", "action"),
    [("Join", "add"), ("Leave", "remove"), ("Promote", "promote"), ("Demote", "demote")],
)
def test_group_participant_updates(field: str, action: str) -> None:
    event = group_event(**{field: [jid(BOB, device=3), jid(ALICE)]})
    assert notices.group_updates(event) == [GroupUpdated(GROUP, action, [BOB, ALICE], by=ALICE)]


def test_several_group_updates_in_one_event() -> None:
    event = group_event(
        Name=neonize.GroupName(Name="n"),
        Locked=neonize.GroupLocked(isLocked=True),
        Announce=neonize.GroupAnnounce(IsAnnounce=True),
        Join=[jid(BOB)],
        Demote=[jid(ALICE)],
    )
    assert notices.group_updates(event) == [
        GroupUpdated(GROUP, "subject", by=ALICE, value="n"),
        GroupUpdated(GROUP, "settings", by=ALICE),
        GroupUpdated(GROUP, "add", [BOB], by=ALICE),
        GroupUpdated(GROUP, "demote", [ALICE], by=ALICE),
    ]


def test_group_update_without_changes_or_sender() -> None:
    assert notices.group_updates(GroupInfoEv(JID=jid(GROUP))) == []
    assert notices.group_updates(GroupInfoEv(JID=jid(GROUP), Leave=[jid(BOB)])) == [
        GroupUpdated(GROUP, "remove", [BOB], by=None)
    ]


@pytest.mark.parametrize(("create_key", "action"), [("CK1", "created"), ("", "join")])
def test_joined_group(create_key: str, action: str) -> None:
    event = JoinedGroupEv(
        GroupInfo=neonize.GroupInfo(JID=jid(GROUP)), CreateKey=create_key, Sender=jid(BOB)
    )
    assert notices.joined_group(event) == GroupUpdated(GROUP, action, by=BOB)


def test_group_info_conversion() -> None:
    info = neonize.GroupInfo(
        JID=jid(GROUP),
        OwnerJID=jid(ALICE),
        GroupName=neonize.GroupName(Name="Team"),
        GroupTopic=neonize.GroupTopic(Topic="Work only"),
        GroupLocked=neonize.GroupLocked(isLocked=True),
        GroupAnnounce=neonize.GroupAnnounce(IsAnnounce=False),
        GroupCreated=1_700_000_000.0,
        Participants=[
            neonize.GroupParticipant(JID=jid(ALICE), IsAdmin=True, IsSuperAdmin=True),
            neonize.GroupParticipant(JID=jid(BOB), IsAdmin=True),
            neonize.GroupParticipant(JID=jid("6283333333333@s.whatsapp.net")),
        ],
    )
    result = translate.group_info(info)
    assert result.id == GROUP
    assert result.subject == "Team"
    assert result.description == "Work only"
    assert result.owner == ALICE
    assert result.participants == [
        {"id": ALICE, "role": "superadmin"},
        {"id": BOB, "role": "admin"},
        {"id": "6283333333333@s.whatsapp.net", "role": "member"},
    ]
    assert result.settings == {"announce": False, "locked": True}
    assert result.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_group_info_defaults() -> None:
    info = neonize.GroupInfo(JID=jid(GROUP), GroupName=neonize.GroupName(Name="G"))
    result = translate.group_info(info)
    assert result.description is None
    assert result.owner is None
    assert result.participants == []
    assert result.settings == {"announce": False, "locked": False}
    assert result.created_at is None


# ---------------------------------------------------------------------------------------
# History sync


def history_item(
    msg: Any, id: str, *, from_me: bool = False, participant: str = "", ts: int = 0
) -> Any:
    info = web.WebMessageInfo(
        key=MessageKey(ID=id, fromMe=from_me, participant=participant or None),
        message=msg,
        messageTimestamp=ts,
    )
    return hs.HistorySyncMsg(message=info)


def history_event() -> Any:
    data = hs.HistorySync(
        syncType=hs.HistorySync.INITIAL_BOOTSTRAP,
        conversations=[
            hs.Conversation(
                ID=ALICE,
                name="Alice (address book)",
                messages=[
                    history_item(wa.Message(conversation="hi"), "H1", ts=1_700_000_000),
                    history_item(wa.Message(conversation="hello"), "H2", from_me=True),
                    history_item(wa.Message(protocolMessage=wa.ProtocolMessage(type=3)), "H3"),
                ],
            ),
            hs.Conversation(
                ID=GROUP,
                name="Team",
                messages=[
                    history_item(
                        wa.Message(
                            imageMessage=wa.ImageMessage(mimetype="image/png", fileLength=4)
                        ),
                        "H4",
                        participant=BOB,
                    ),
                    history_item(
                        wa.Message(
                            reactionMessage=wa.ReactionMessage(key=MessageKey(ID="H4"), text="👍")
                        ),
                        "H5",
                        participant=ALICE,
                    ),
                ],
            ),
            hs.Conversation(ID="", messages=[history_item(wa.Message(conversation="x"), "H6")]),
        ],
        pushnames=[
            hs.Pushname(ID=ALICE, pushname="Alice"),
            hs.Pushname(ID=BOB, pushname="Bob"),
            hs.Pushname(ID="6283333333333@s.whatsapp.net", pushname=""),
        ],
    )
    return HistorySyncEv(Data=data)


def test_history_batch_messages() -> None:
    batch = history.history_batch(history_event())
    events = [item.event for item in batch.messages]
    assert all(isinstance(event, MessageReceived) for event in events)
    assert [(e.id, e.chat_id, e.sender, e.from_me) for e in events] == [  # type: ignore[union-attr]
        ("H1", ALICE, ALICE, False),
        ("H2", ALICE, None, True),
        ("H4", GROUP, BOB, False),
    ]
    first = events[0]
    assert isinstance(first, MessageReceived)
    assert first.content == {"text": "hi"}
    assert first.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert batch.messages[2].media == MediaRef("image/png", 4)


def test_history_batch_names() -> None:
    batch = history.history_batch(history_event())
    assert batch.names == {ALICE: "Alice", BOB: "Bob", GROUP: "Team"}


def test_history_participant_from_the_web_message() -> None:
    info = web.WebMessageInfo(
        key=MessageKey(ID="W1"), participant=BOB, message=wa.Message(conversation="x")
    )
    data = hs.HistorySync(
        syncType=hs.HistorySync.RECENT,
        conversations=[hs.Conversation(ID=GROUP, messages=[hs.HistorySyncMsg(message=info)])],
    )
    batch = history.history_batch(HistorySyncEv(Data=data))
    assert batch.messages[0].event.sender == BOB  # type: ignore[union-attr]


def test_worker_history_marks_messages_and_reports_names() -> None:
    events = history_events(history_event())
    messages = [e for e in events if isinstance(e, MessageReceived)]
    assert [m.id for m in messages] == ["H1", "H2", "H4"]
    assert all(m.history for m in messages)
    assert messages[2].content == {"mediaError": "not downloaded: media from a history sync"}
    assert messages[2].media is None
    assert events[-1] == ContactsSeen({ALICE: "Alice", BOB: "Bob", GROUP: "Team"})


# ---------------------------------------------------------------------------------------
# Outbound messages


def test_plain_text_is_a_conversation() -> None:
    msg = serializable(translate.text_message(sent.Text("hi")))
    assert fields_of(msg) == ["conversation"]
    assert msg.conversation == "hi"


def test_text_with_mentions_and_reply() -> None:
    msg = serializable(translate.text_message(sent.Text("@bob hi", sent.Reply("Q1"), (BOB,))))
    assert fields_of(msg) == ["extendedTextMessage"]
    ext = msg.extendedTextMessage
    assert ext.text == "@bob hi"
    assert list(ext.contextInfo.mentionedJID) == [BOB]
    assert ext.contextInfo.stanzaID == "Q1"
    assert ext.contextInfo.HasField("quotedMessage")


def test_text_with_mentions_only() -> None:
    msg = serializable(translate.text_message(sent.Text("@bob", mentions=(BOB,))))
    context = msg.extendedTextMessage.contextInfo
    assert list(context.mentionedJID) == [BOB]
    assert not context.HasField("stanzaID")
    assert not context.HasField("quotedMessage")


def assert_uploaded(media: Any, mimetype: str) -> None:
    assert media.URL == "https://mmg.whatsapp.net/x"
    assert media.directPath == "/v/t62/x"
    assert media.mediaKey == b"key"
    assert media.fileEncSHA256 == b"enc"
    assert media.fileSHA256 == b"sha"
    assert media.fileLength == 3
    assert media.mimetype == mimetype


@pytest.mark.parametrize(
    ("kind", "field", "mimetype", "caption"),
    [
        ("image", "imageMessage", "image/jpeg", "cat"),
        ("video", "videoMessage", "video/mp4", "clip"),
        ("audio", "audioMessage", "audio/mpeg", None),
        ("voice", "audioMessage", "audio/ogg; codecs=opus", None),
        ("sticker", "stickerMessage", "image/webp", None),
        ("document", "documentMessage", "application/pdf", "report"),
    ],
)
def test_media_message(kind: str, field: str, mimetype: str, caption: str | None) -> None:
    filename = "r.pdf" if kind == "document" else None
    content = sent.MEDIA_KINDS[kind](sent.MediaFile("k", mimetype, 3, filename), caption)
    msg = serializable(translate.media_message(content, upload()))
    assert fields_of(msg) == [field]
    media = getattr(msg, field)
    assert_uploaded(media, mimetype)
    if caption:
        assert media.caption == caption
    if field == "audioMessage":
        assert media.PTT is (kind == "voice")
    if kind == "document":
        assert media.fileName == "r.pdf"
        assert media.title == "r.pdf"


def test_media_without_caption_has_none() -> None:
    content = sent.Image(sent.MediaFile("k", "image/png", 3))
    msg = serializable(translate.media_message(content, upload()))
    assert not msg.imageMessage.HasField("caption")


def test_document_without_filename() -> None:
    content = sent.Document(sent.MediaFile("k", "application/octet-stream", 3))
    msg = serializable(translate.media_message(content, upload()))
    assert msg.documentMessage.fileName == "file"
    assert msg.documentMessage.title == "file"


def test_media_reply() -> None:
    content = sent.Video(
        sent.MediaFile("k", "video/mp4", 3), reply_to=sent.Reply("Q2", "the quote", BOB)
    )
    msg = serializable(translate.media_message(content, upload()))
    context = msg.videoMessage.contextInfo
    assert context.stanzaID == "Q2"
    assert context.quotedMessage.conversation == "the quote"
    assert context.participant == BOB


def test_location_message() -> None:
    msg = serializable(translate.location_message(sent.Location(-6.2, 106.8, "Monas")))
    loc = msg.locationMessage
    assert (loc.degreesLatitude, loc.degreesLongitude, loc.name) == (-6.2, 106.8, "Monas")
    assert not loc.HasField("address")


def test_one_contact_card() -> None:
    msg = serializable(
        translate.contacts_message(sent.Contacts((sent.ContactCard("Carol", "+1", VCARD),)))
    )
    assert fields_of(msg) == ["contactMessage"]
    assert (msg.contactMessage.displayName, msg.contactMessage.vcard) == ("Carol", VCARD)


def test_several_contact_cards() -> None:
    cards = (sent.ContactCard("Carol", "+1", VCARD), sent.ContactCard("Dave", "+2", "BEGIN:VCARD"))
    msg = serializable(translate.contacts_message(sent.Contacts(cards)))
    assert fields_of(msg) == ["contactsArrayMessage"]
    array = msg.contactsArrayMessage
    assert array.displayName == "2 contacts"
    assert [(c.displayName, c.vcard) for c in array.contacts] == [
        ("Carol", VCARD),
        ("Dave", "BEGIN:VCARD"),
    ]


@pytest.mark.parametrize("from_me", [True, False])
def test_reaction_message(from_me: bool) -> None:
    msg = serializable(
        translate.reaction_message(
            ALICE, sent.Reaction("T1", "❤️", sent.Target(from_me)), now_ms=1_700_000_000_000
        )
    )
    reaction = msg.reactionMessage
    assert reaction.key.remoteJID == ALICE
    assert reaction.key.fromMe is from_me
    assert reaction.key.ID == "T1"
    assert reaction.text == "❤️"
    assert reaction.senderTimestampMS == 1_700_000_000_000


def test_reaction_removal_is_empty_text() -> None:
    msg = translate.reaction_message(ALICE, sent.Reaction("T1", "", sent.Target(True)), now_ms=1)
    assert serializable(msg).reactionMessage.text == ""


@pytest.mark.parametrize("chat", [ALICE, GROUP])
def test_revoke_message(chat: str) -> None:
    msg = serializable(translate.revoke_message(chat, "MINE1", BOB))
    assert fields_of(msg) == ["protocolMessage"]
    protocol = msg.protocolMessage
    assert protocol.type == wa.ProtocolMessage.REVOKE
    assert protocol.key.remoteJID == chat
    assert protocol.key.fromMe is True
    assert protocol.key.ID == "MINE1"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (sent.Text("hi"), "conversation"),
        (sent.Location(1.0, 2.0), "locationMessage"),
        (sent.Contacts((sent.ContactCard("C", "+1", VCARD),)), "contactMessage"),
        (sent.Reaction("T", "👍"), "reactionMessage"),
        (sent.Image(sent.MediaFile("k", "image/png", 1)), "imageMessage"),
        (sent.Video(sent.MediaFile("k", "video/mp4", 1)), "videoMessage"),
        (sent.Audio(sent.MediaFile("k", "audio/mpeg", 1)), "audioMessage"),
        (sent.Voice(sent.MediaFile("k", "audio/ogg", 1)), "audioMessage"),
        (sent.Sticker(sent.MediaFile("k", "image/webp", 1)), "stickerMessage"),
        (sent.Document(sent.MediaFile("k", "text/plain", 1)), "documentMessage"),
    ],
)
def test_outgoing_message_dispatch(content: sent.Content, field: str) -> None:
    message = OutgoingMessage("OUR1", ALICE, content)
    built = translate.outgoing_message(message, upload=upload(), now_ms=5)
    assert fields_of(serializable(built)) == [field]


def test_outgoing_reaction_target_from_me() -> None:
    message = OutgoingMessage("OUR1", ALICE, sent.Reaction("T", "👍", sent.Target(True)))
    built = translate.outgoing_message(message, now_ms=42)
    assert built.reactionMessage.key.fromMe is True
    assert built.reactionMessage.senderTimestampMS == 42


def test_an_unknown_stored_type_is_refused() -> None:
    with pytest.raises(sent.UnknownContent, match="poll"):
        sent.from_stored("poll", {})


# ---------------------------------------------------------------------------------------
# Addresses


@pytest.mark.parametrize(
    "chat_id", [ALICE, GROUP, "123456789012345@lid", "120363000000000002@newsletter"]
)
def test_chat_id_round_trip(chat_id: str) -> None:
    built = translate.jid_of(chat_id)
    assert translate.chat_id_of(built) == chat_id
    assert built.Device == 0


def test_jid_of_bare_number_is_a_user() -> None:
    assert translate.chat_id_of(translate.jid_of("6281111111111")) == ALICE


def test_chat_id_of_drops_the_device_and_empty_is_none() -> None:
    assert translate.chat_id_of(jid(ALICE, device=12)) == ALICE
    assert translate.chat_id_of(neonize.JID(User="", Server="")) is None
    assert translate.chat_id_of(neonize.JID(User="", Server="broadcast")) == "broadcast"


def test_jid_of_is_serializable() -> None:
    raw = translate.jid_of(GROUP).SerializeToString()
    assert neonize.JID.FromString(raw).Server == "g.us"


@pytest.mark.parametrize(
    "text", ["6281111111111:4@s.whatsapp.net", "123:4@s.whatsapp.net", ALICE, "99:2@lid"]
)
def test_jid_text_round_trip(text: str) -> None:
    assert jid_text(jid_from_text(text)) == text


def test_jid_from_text_fields() -> None:
    parsed = jid_from_text("123:4@s.whatsapp.net")
    assert (parsed.User, parsed.Device, parsed.Server) == ("123", 4, "s.whatsapp.net")
    assert jid_text(jid("123@s.whatsapp.net", device=4)) == "123:4@s.whatsapp.net"


def test_jid_from_text_is_serializable() -> None:
    jid_from_text("123:4@s.whatsapp.net").SerializeToString()


# ---------------------------------------------------------------------------------------
# The wire to the worker


def through_the_wire(event: Any) -> Any:
    frame = {"kind": "event", "session": "s1", **encode_event(event)}
    packed = pack(frame)
    assert int.from_bytes(packed[:4], "big") == len(packed) - 4
    return decode_event(orjson.loads(packed[4:]))


STAMP = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "event",
    [
        QrUpdated("2@abc,def"),
        Authenticated("6281111111111", "Alice"),
        Authenticated("6281111111111"),
        Connected(),
        Disconnected("lost"),
        LoggedOut("LOGGED_OUT: x"),
        Failed("TEMPORARY_BAN: y"),
        MessageAck("M1", ALICE, "read"),
        MessageReceived("M2", GROUP, BOB, "text", {"text": "hi", "mentions": [ALICE]}, STAMP),
        MessageReceived(
            "M3",
            ALICE,
            None,
            "document",
            {"caption": "c"},
            STAMP,
            from_me=True,
            media=InboundMedia("application/pdf", 4, "a.pdf", path=Path("/t/in-1")),
            push_name="Me",
            history=True,
        ),
        MessageReceived(
            "M4", ALICE, ALICE, "image", {}, STAMP, media=InboundMedia("image/png", 1, None)
        ),
        MessageRevoked("M5", ALICE, ALICE),
        ReactionReceived("M6", GROUP, BOB, ""),
        GroupUpdated(GROUP, "add", [ALICE, BOB], by=BOB),
        GroupUpdated(GROUP, "subject"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_round_trip(event: Any) -> None:
    assert through_the_wire(event) == event


def test_contacts_seen_round_trip() -> None:
    event = ContactsSeen({ALICE: "Alice", GROUP: "Team"})
    assert through_the_wire(event) == event


def test_media_travels_as_a_file_named_in_the_frame() -> None:
    media = InboundMedia("image/png", 3, path=Path("/data/whatsmeow/transfer/in-1"))
    event = MessageReceived("M", ALICE, ALICE, "image", {}, STAMP, media=media)
    frame = pack(encode_event(event))
    body = orjson.loads(frame[4:])
    assert body["data"]["media"]["path"] == "/data/whatsmeow/transfer/in-1"
    assert body["data"]["media"]["data"] is None
    assert body["data"]["timestamp"] == "2024-05-06T07:08:09.123456+00:00"
    assert decode_event(body) == event
    with pytest.raises(ValueError, match="as a file"):
        encode_event(replace(event, media=InboundMedia("image/png", 3, data=b"png")))


async def test_read_frame() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(pack({"id": 1, "op": "ping", "blob": b"\x01\x02"}))
    reader.feed_data(pack({"id": 2}))
    reader.feed_eof()
    assert await read_frame(reader) == {"id": 1, "op": "ping", "blob": "AQI="}
    assert await read_frame(reader) == {"id": 2}
    assert await read_frame(reader) is None


async def test_read_frame_cut_short_is_none() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(pack({"id": 1})[:-2])
    reader.feed_eof()
    assert await read_frame(reader) is None


async def test_read_frame_over_the_limit() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((2**31).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="over the limit"):
        await read_frame(reader)


# ---------------------------------------------------------------------------------------
# Worker mappings that need no client


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (neonize.LOGGED_OUT, LoggedOut("LOGGED_OUT: LOGGED_OUT")),
        (neonize.MAIN_DEVICE_GONE, LoggedOut("LOGGED_OUT: MAIN_DEVICE_GONE")),
        (neonize.TEMP_BANNED, Failed("TEMP_BANNED")),
        (neonize.CLIENT_OUTDATED, Failed("CLIENT_OUTDATED")),
        (neonize.GENERIC, Disconnected("connect failure: GENERIC")),
        (neonize.SERVICE_UNAVAILABLE, Disconnected("connect failure: SERVICE_UNAVAILABLE")),
    ],
)
def test_connect_failure(reason: int, expected: Any) -> None:
    assert connect_failure(ConnectFailureEv(Reason=reason)) == expected


def test_connect_failure_keeps_the_message() -> None:
    event = ConnectFailureEv(Reason=neonize.TEMP_BANNED, Message="banned for spam")
    assert connect_failure(event) == Failed("TEMP_BANNED: banned for spam")


def testban_reason() -> None:
    code = neonize.TemporaryBan.SENT_TOO_MANY_SAME_MESSAGE
    reason = ban_reason(TemporaryBanEv(Code=code, Expire=3600))
    assert reason.startswith("TEMPORARY_BAN: SENT_TOO_MANY_SAME_MESSAGE")
    assert "3600s" in reason
    found = re.search(r"at (\S+)$", reason)
    assert found is not None
    expires = datetime.fromisoformat(found.group(1))
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=5)


async def test_worker_translates_events_without_a_client() -> None:
    session = object.__new__(WorkerSession)
    session.announced = True
    session.memory = SessionMemory()
    translated = session._translate
    assert await translated("LoggedOutEv", LoggedOutEv(Reason=neonize.LOGGED_OUT)) == [
        LoggedOut("LOGGED_OUT: LOGGED_OUT (unlinked from the phone or by WhatsApp)")
    ]
    failed = PairStatusEv(Status=neonize.PairStatus.ERROR, Error="bad code")
    assert await translated("PairStatusEv", failed) == [Failed("PAIRING_FAILED: bad code")]
    assert await translated("ConnectFailureEv", ConnectFailureEv(Reason=neonize.GENERIC)) == [
        Disconnected("connect failure: GENERIC")
    ]
    ack = receipt(neonize.Receipt.READ, ["A"])
    assert await translated("ReceiptEv", ack) == [MessageAck("A", ALICE, "read")]
    text = make_message(wa.Message(conversation="hi"))
    [message] = await translated("MessageEv", text)
    assert isinstance(message, MessageReceived)
    assert message.content == {"text": "hi"}
    assert await translated("UnknownEv", object()) == []


def test_a_command_past_its_deadline_never_reaches_go() -> None:
    """The API process gave up waiting: running it now could only duplicate a retry."""
    session = object.__new__(WorkerSession)
    session.go_lock = threading.Lock()
    session.host = SimpleNamespace(go_maps=GoMapsLock())  # type: ignore[assignment]
    session.go_connected = True
    with pytest.raises(CommandError) as refused:
        run_command(session, "check", {"phone": "15550101111"}, deadline=time.time() - 1)
    assert refused.value.kind == "not_ready"


def test_commands_wait_for_a_connected_client() -> None:
    session = object.__new__(WorkerSession)
    session.go_lock = threading.Lock()
    session.host = SimpleNamespace(go_maps=GoMapsLock())  # type: ignore[assignment]
    session.go_connected = False
    session.go_socket_up = False
    session.waiting_link = False
    with pytest.raises(CommandError) as refused:
        run_command(session, "send", {})
    assert refused.value.kind == "not_ready"
    with pytest.raises(CommandError) as pairing:
        run_command(session, "pair", {"phone": "1"})
    assert pairing.value.kind == "pairing"


class NeonizeStandIn:
    """neonize's client as far as the send command uses it: an upload, a send that
    answers with WhatsApp's id."""

    def __init__(self) -> None:
        self.uploads: list[tuple[bytes, Any]] = []
        self.sent: list[tuple[Any, Any]] = []

    def upload(self, data: bytes, media_type: Any) -> Any:
        self.uploads.append((data, media_type))
        return upload()

    def send_message(self, jid: Any, message: Any) -> Any:
        self.sent.append((jid, message))
        return SimpleNamespace(ID=f"WA{len(self.sent)}")


def test_a_typed_send_crosses_to_the_worker_and_is_built_there(tmp_path: Path) -> None:
    """What the API process hands the worker (a frame) is typed again there: a media
    send is uploaded and built with its caption and quote, a text is not uploaded, and
    each engine id is remembered against ours."""
    stand_in = NeonizeStandIn()
    session = object.__new__(WorkerSession)
    session.go_lock = threading.Lock()
    host = SimpleNamespace(go_maps=GoMapsLock(), max_image_dimension=4096)
    session.host = host  # type: ignore[assignment]
    session.go_connected = True
    session.client = stand_in
    session.sent = OrderedDict()
    image = sent.Image(sent.MediaFile("k", "image/png", 3), "look", sent.Reply("Q1", "hi", BOB))
    file = tmp_path / "out-1"
    file.write_bytes(b"png")
    for our_id, content, media in [
        ("OUR1", image, {"media_path": str(file)}),
        ("OUR2", sent.Text("plain"), {}),
    ]:
        wire = OutgoingMessage(our_id, ALICE, content)
        frame = orjson.loads(pack({"message": outgoing_wire(wire), **media})[4:])
        run_command(session, "send", frame)
    assert stand_in.uploads == [(b"png", translate.MEDIA_TYPES["image"])]
    built = serializable(stand_in.sent[0][1]).imageMessage
    assert built.caption == "look"
    assert built.contextInfo.stanzaID == "Q1"
    assert built.contextInfo.participant == BOB
    assert serializable(stand_in.sent[1][1]).conversation == "plain"
    assert dict(session.sent) == {"WA1": "OUR1", "WA2": "OUR2"}


def test_group_records_survive_the_wire() -> None:
    group = GroupInfo(
        id=GROUP,
        subject="Trip",
        description=None,
        owner=ALICE,
        participants=[{"id": ALICE, "role": "superadmin"}, {"id": BOB, "role": "member"}],
        settings={"announce": True, "locked": False},
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    frame = orjson.loads(pack({"result": encode_group(group)})[4:])
    assert decode_group(frame["result"]) == group


def test_history_carries_the_phones_chat_settings() -> None:
    """Archived, pinned, muted and timed chats as the phone has them; others say nothing."""
    later = int(time.time()) + 3600
    data = hs.HistorySync(
        syncType=hs.HistorySync.INITIAL_BOOTSTRAP,
        conversations=[
            hs.Conversation(ID=ALICE, archived=True, pinned=1_700_000_000),
            hs.Conversation(ID=GROUP, muteEndTime=later, ephemeralExpiration=86400),
            hs.Conversation(ID=BOB, muteEndTime=1_600_000_000),  # a mute long over
        ],
    )
    batch = history.history_batch(HistorySyncEv(Data=data))
    assert batch.settings == [
        ChatUpdated(ALICE, archived=True, pinned=True, muted=False),
        ChatUpdated(GROUP, ephemeral_seconds=86400, archived=False, pinned=False, muted=True),
    ]
    assert history._muted(2**64 - 1)
    assert history._muted(later * 1000)
    assert ChatUpdated(ALICE, archived=True, pinned=True, muted=False) in history_events(
        HistorySyncEv(Data=data)
    )


def test_history_keeps_the_phones_unread_messages_unread() -> None:
    """A conversation's unread count names its newest messages from others, whatever
    order the chunk lists them in; our own and older ones, and other chats', are read."""
    data = hs.HistorySync(
        syncType=hs.HistorySync.INITIAL_BOOTSTRAP,
        conversations=[
            hs.Conversation(
                ID=ALICE,
                unreadCount=2,
                messages=[
                    history_item(wa.Message(conversation="a"), "U1", ts=1_700_000_100),
                    history_item(wa.Message(conversation="b"), "U3", ts=1_700_000_300),
                    history_item(
                        wa.Message(conversation="c"), "U4", from_me=True, ts=1_700_000_400
                    ),
                    history_item(wa.Message(conversation="d"), "U2", ts=1_700_000_200),
                ],
            ),
            hs.Conversation(
                ID=BOB, messages=[history_item(wa.Message(conversation="e"), "B1", ts=1)]
            ),
        ],
    )
    assert _unread_ids(data) == {"U2", "U3"}
    # A later sync (older messages under the same count) and a chunk without the chat's
    # last message keep nothing unread: the newest messages are not there.
    data.syncType = hs.HistorySync.RECENT
    assert not _unread_ids(data)
    data.syncType = hs.HistorySync.INITIAL_BOOTSTRAP
    data.conversations[0].lastMsgTimestamp = 1_700_000_500
    assert not _unread_ids(data)


def _unread_ids(data: Any) -> set[str]:
    events = history_events(HistorySyncEv(Data=data))
    return {e.id for e in events if isinstance(e, MessageReceived) and e.unread}
