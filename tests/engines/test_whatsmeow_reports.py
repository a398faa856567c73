"""What whatsmeow reports beyond plain messages, fed with neonize's own protobufs: edits
as WhatsApp really sends them, receipts from the account's own phone and from the
server, polls and their (decrypted) votes, the newer message types, presence, calls,
group changes, and LID addressing mapped to phone numbers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from neonize.events import (
    CallOfferEv,
    CallOfferNoticeEv,
    ChatPresenceEv,
    GroupInfoEv,
    HistorySyncEv,
    JoinedGroupEv,
    MessageEv,
    PresenceEv,
    ReceiptEv,
    UndecryptableMessageEv,
)
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.proto.waHistorySync import WAWebProtobufsHistorySync_pb2 as hs
from neonize.proto.waWeb import WAWebProtobufsWeb_pb2 as web

from openwa.engines.base import (
    Authenticated,
    CallReceived,
    ChatUpdated,
    Connected,
    ContactsSeen,
    ContactUpdated,
    EngineEvent,
    GroupUpdated,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.engines.whatsmeow import notices, translate
from openwa.engines.whatsmeow.go_maps import GoMapsLock
from openwa.engines.whatsmeow.protocol import decode_event, encode_event, pack
from openwa.engines.whatsmeow.session_memory import SessionMemory
from openwa.engines.whatsmeow.translate import MediaRef
from openwa.engines.whatsmeow.worker_session import Downloads, WorkerSession, history_events
from tests.engines.go_standin import LinkedGoStandIn

ALICE = "6281111111111@s.whatsapp.net"
ALICE_LID = "100000000000001@lid"
BOB = "6282222222222@s.whatsapp.net"
BOB_LID = "100000000000002@lid"
ME = "6289999999999@s.whatsapp.net"
ME_LID = "100000000000009@lid"
GROUP = "120363000000000001@g.us"
T0 = 1_764_000_000


def jid(text: str, device: int = 0) -> Any:
    user, _, server = text.partition("@")
    return neonize.JID(User=user, Server=server, Device=device, Integrator=0, RawAgent=0)


def source(
    chat: str = ALICE,
    sender: str | None = None,
    *,
    from_me: bool = False,
    sender_alt: str | None = None,
    recipient_alt: str | None = None,
    lid: bool = False,
) -> Any:
    found = neonize.MessageSource(
        Chat=jid(chat),
        Sender=jid(sender or chat),
        IsFromMe=from_me,
        IsGroup=chat.endswith("@g.us"),
        AddressingMode=neonize.LID if lid else neonize.PN,
    )
    if sender_alt:
        found.SenderAlt.CopyFrom(jid(sender_alt))
    if recipient_alt:
        found.RecipientAlt.CopyFrom(jid(recipient_alt))
    return found


def message_ev(
    msg: Any, src: Any = None, *, id: str = "M1", ts: int = T0 * 1000, **info: Any
) -> Any:
    full = neonize.MessageInfo(MessageSource=src or source(), ID=id, Timestamp=ts, **info)
    return MessageEv(Info=full, Message=msg)


def inbound(msg: Any, src: Any = None, **kwargs: Any) -> Any:
    return translate.inbound_message(message_ev(msg, src, **kwargs))


def event_of(msg: Any, src: Any = None, **kwargs: Any) -> Any:
    found = inbound(msg, src, **kwargs)
    assert found is not None
    return found.event


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# ---------------------------------------------------------------------------------------
# Edits and revokes


def edit(target: str, new: Any, *, ms: int = (T0 + 60) * 1000) -> Any:
    """An edit as whatsmeow hands it over: the `editedMessage` wrapper already removed."""
    return wa.Message(
        protocolMessage=wa.ProtocolMessage(
            type=wa.ProtocolMessage.MESSAGE_EDIT,
            key=MessageKey(remoteJID=ALICE, fromMe=False, ID=target),
            editedMessage=new,
            timestampMS=ms,
        )
    )


@pytest.mark.parametrize(
    "new",
    [
        wa.Message(conversation="fixed"),
        wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text="fixed")),
        wa.Message(imageMessage=wa.ImageMessage(caption="fixed")),
    ],
    ids=["conversation", "extended", "caption"],
)
def test_an_edit_as_whatsapp_sends_it(new: Any) -> None:
    event = MessageEv(
        Info=neonize.MessageInfo(MessageSource=source(), ID="EDIT1", Timestamp=T0 * 1000, Edit="1"),
        Message=edit("ORIG", new),
        IsEdit=True,
    )
    found = translate.inbound_message(event)
    assert found is not None
    assert found.event == MessageEdited("ORIG", ALICE, ALICE, "fixed", at(T0 + 60))


def test_an_edit_without_its_time_takes_the_message_time() -> None:
    event = event_of(edit("ORIG", wa.Message(conversation="x"), ms=0), ts=(T0 + 5) * 1000)
    assert event == MessageEdited("ORIG", ALICE, ALICE, "x", at(T0 + 5))


def test_an_own_edit_from_the_phone() -> None:
    src = source(ALICE, ME, from_me=True)
    event = event_of(edit("MINE", wa.Message(conversation="better")), src)
    assert event == MessageEdited("MINE", ALICE, ME, "better", at(T0 + 60), from_me=True)


def test_an_edit_without_text_reports_nothing() -> None:
    assert inbound(edit("ORIG", wa.Message(reactionMessage=wa.ReactionMessage(text="x")))) is None


def history_of(*messages: Any, chat: str = ALICE) -> Any:
    items = [hs.HistorySyncMsg(message=m) for m in messages]
    conversation = hs.Conversation(ID=chat, messages=items)
    return HistorySyncEv(Data=hs.HistorySync(conversations=[conversation]))


def web_message(message_id: str, msg: Any, *, from_me: bool = False, ts: int = T0) -> Any:
    key = MessageKey(remoteJID=ALICE, fromMe=from_me, ID=message_id)
    return web.WebMessageInfo(key=key, message=msg, messageTimestamp=ts)


def test_edits_and_revokes_inside_history_sync() -> None:
    # History sync keeps WhatsApp's own shape: the edit still inside `editedMessage`.
    edited = wa.Message(
        editedMessage=wa.FutureProofMessage(message=edit("H1", wa.Message(conversation="v2")))
    )
    revoke = wa.Message(
        protocolMessage=wa.ProtocolMessage(type=wa.ProtocolMessage.REVOKE, key=MessageKey(ID="H0"))
    )
    timer = wa.Message(
        protocolMessage=wa.ProtocolMessage(
            type=wa.ProtocolMessage.EPHEMERAL_SETTING, ephemeralExpiration=86400
        )
    )
    sync = history_of(
        web_message("H1", wa.Message(conversation="v1")),
        web_message("E1", edited, ts=T0 + 60),
        web_message("R1", revoke, ts=T0 + 70),
        web_message("T1", timer, ts=T0 + 80),
    )
    out = history_events(sync)
    assert [type(e).__name__ for e in out] == ["MessageReceived", "MessageEdited", "MessageRevoked"]
    assert out[1] == MessageEdited("H1", ALICE, ALICE, "v2", at(T0 + 60), history=True)
    assert out[2] == MessageRevoked("H0", ALICE, ALICE, history=True)
    assert isinstance(out[0], MessageReceived)
    assert out[0].history


def test_a_disappearing_timer_change_in_a_chat() -> None:
    msg = wa.Message(
        protocolMessage=wa.ProtocolMessage(
            type=wa.ProtocolMessage.EPHEMERAL_SETTING, ephemeralExpiration=604800
        )
    )
    assert event_of(msg) == ChatUpdated(ALICE, ephemeral_seconds=604800)
    off = wa.Message(protocolMessage=wa.ProtocolMessage(type=wa.ProtocolMessage.EPHEMERAL_SETTING))
    assert event_of(off) == ChatUpdated(ALICE, ephemeral_seconds=0)


# ---------------------------------------------------------------------------------------
# Receipts


def receipt(kind: int, ids: list[str], src: Any = None) -> Any:
    return ReceiptEv(MessageSource=src or source(), MessageIDs=ids, Type=kind, Timestamp=T0)


def test_a_read_receipt_from_the_phone_marks_inbound_messages_read() -> None:
    src = source(ALICE, ME, from_me=True)
    events = notices.receipt_events(receipt(neonize.Receipt.READ_SELF, ["IN1", "IN2"], src))
    assert events == [ReadBySelf(ALICE, ["IN1", "IN2"])]
    played = notices.receipt_events(receipt(neonize.Receipt.PLAYED_SELF, ["V1"], src))
    assert played == [ReadBySelf(ALICE, ["V1"])]
    assert notices.receipt_events(receipt(neonize.Receipt.READ_SELF, [], src)) == []


def test_a_read_receipt_from_the_phone_in_a_lid_chat_names_the_phone_chat() -> None:
    src = source(ALICE_LID, ME_LID, from_me=True, recipient_alt=ALICE, sender_alt=ME)
    events = notices.receipt_events(receipt(neonize.Receipt.READ_SELF, ["IN1"], src))
    assert events == [ReadBySelf(ALICE, ["IN1"])]


def test_a_server_error_receipt_fails_the_message() -> None:
    events = notices.receipt_events(receipt(neonize.Receipt.SERVER_ERROR, ["OUT1"]))
    assert events == [MessageAck("OUT1", ALICE, "failed")]
    assert notices.receipt_acks(receipt(neonize.Receipt.SERVER_ERROR, ["OUT1"])) == events


def test_group_read_receipts_say_who_read() -> None:
    src = source(GROUP, BOB)
    assert notices.receipt_events(receipt(neonize.Receipt.READ, ["G1"], src)) == [
        MessageAck("G1", GROUP, "read", by=BOB)
    ]
    assert notices.receipt_events(receipt(neonize.Receipt.DELIVERED, ["G1"], src)) == [
        MessageAck("G1", GROUP, "delivered")
    ]
    lid = source(GROUP, BOB_LID, sender_alt=BOB, lid=True)
    assert notices.receipt_events(receipt(neonize.Receipt.PLAYED, ["G2"], lid)) == [
        MessageAck("G2", GROUP, "played", by=BOB)
    ]


def test_a_direct_read_receipt_has_no_by_and_a_lid_chat_is_the_phone_chat() -> None:
    src = source(ALICE_LID, sender_alt=ALICE, lid=True)
    assert notices.receipt_events(receipt(neonize.Receipt.READ, ["D1"], src)) == [
        MessageAck("D1", ALICE, "read")
    ]


@pytest.mark.parametrize(
    "kind", [neonize.Receipt.SENDER, neonize.Receipt.RETRY, neonize.Receipt.INACTIVE]
)
def test_other_receipts_report_nothing(kind: int) -> None:
    assert notices.receipt_events(receipt(kind, ["X"])) == []


# ---------------------------------------------------------------------------------------
# Polls


def poll(*options: str, question: str = "Lunch?", count: int = 1) -> Any:
    return wa.PollCreationMessage(
        name=question,
        options=[wa.PollCreationMessage.Option(optionName=o) for o in options],
        selectableOptionsCount=count,
        encKey=b"k" * 32,
    )


@pytest.mark.parametrize(
    "field", ["pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3"]
)
def test_a_poll_is_a_poll_with_its_question_and_options(field: str) -> None:
    event = event_of(wa.Message(**{field: poll("Pizza", "Sushi", count=2)}))
    assert isinstance(event, MessageReceived)
    assert (event.type, event.raw_type) == ("poll", None)
    assert event.content == {
        "poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectableCount": 2}
    }


def test_poll_options_are_known_by_their_sha256() -> None:
    options = translate.poll_options(wa.Message(pollCreationMessageV3=poll("Pizza", "Sushi")))
    assert options == {
        hashlib.sha256(b"Pizza").digest(): "Pizza",
        hashlib.sha256(b"Sushi").digest(): "Sushi",
    }
    assert translate.poll_options(wa.Message(conversation="no poll")) is None


def vote_message(poll_id: str = "POLL1") -> Any:
    """A vote as it arrives: encrypted (its payload opens only with the poll's secret)."""
    return wa.Message(
        pollUpdateMessage=wa.PollUpdateMessage(
            pollCreationMessageKey=MessageKey(remoteJID=GROUP, fromMe=True, ID=poll_id),
            vote=wa.PollEncValue(encPayload=b"\x01" * 32, encIV=b"\x02" * 12),
            senderTimestampMS=T0 * 1000,
        )
    )


def test_an_encrypted_vote_is_not_a_message() -> None:
    assert inbound(vote_message(), source(GROUP, BOB)) is None


class GoStandIn:
    """neonize's client as far as the worker's event path uses it: whatsmeow decrypts a
    vote with the poll's secret from its store and answers the chosen options' hashes."""

    def __init__(
        self, chosen: list[str] | None = None, phones: dict[str, str] | None = None
    ) -> None:
        self.chosen = chosen or []
        self.phones = phones or {}
        self.decrypted: list[Any] = []

    def decrypt_poll_vote(self, event: Any) -> Any:
        self.decrypted.append(event)
        digests = [hashlib.sha256(name.encode()).digest() for name in self.chosen]
        return wa.PollVoteMessage(selectedOptions=digests)

    def get_pn_from_lid(self, lid: Any) -> Any:
        phone = self.phones.get(f"{lid.User}@{lid.Server}")
        if phone is None:
            raise RuntimeError("no mapping in the store")
        return jid(phone)

    def download_any(self, message: Any) -> bytes:
        assert message.HasField("videoMessage")
        return b"video bytes"


class Host:
    """The worker as a session sees it: media downloads land in `transfer_dir`, and a
    message with media is reported (`emitted`) once its download ended."""

    def __init__(self, transfer_dir: Path | None = None) -> None:
        self.max_media_bytes = 1 << 20
        self.transfer_dir = transfer_dir or Path("/nonexistent")
        self.download_timeout_s = 10.0
        self.downloads = Downloads()
        self.go_maps = GoMapsLock()
        self.emitted: asyncio.Queue[Any] = asyncio.Queue()
        self.frames: list[dict[str, Any]] = []

    async def emit(self, _session_id: str, event: Any) -> None:
        await self.emitted.put(event)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


def worker(
    client: Any = None, *, connected: bool = True, transfer_dir: Path | None = None
) -> WorkerSession:
    session = object.__new__(WorkerSession)
    session.session_id = "s1"
    session.memory = SessionMemory()
    session.go_lock = threading.Lock()
    session.go_readers = threading.Condition()
    session.reading = 0
    session.downloads = set()
    session.go_connected = connected
    session.client = client or GoStandIn()
    session.sent = OrderedDict()
    session.announced = True
    session.generation = 0
    session.host = Host(transfer_dir)  # type: ignore[assignment]
    return session


async def test_a_vote_is_decrypted_and_named() -> None:
    client = GoStandIn(["Sushi", "Pizza"])
    session = worker(client)
    created = message_ev(
        wa.Message(pollCreationMessage=poll("Pizza", "Sushi")),
        source(GROUP, ME, from_me=True),
        id="POLL1",
    )
    [poll_message] = await session._translate("MessageEv", created)
    assert isinstance(poll_message, MessageReceived)
    assert poll_message.type == "poll"
    vote = message_ev(vote_message(), source(GROUP, BOB), id="V1")
    assert await session._translate("MessageEv", vote) == [
        PollVoted("POLL1", GROUP, BOB, ["Sushi", "Pizza"])
    ]
    assert client.decrypted == [vote]
    client.chosen = []  # every option taken back
    assert await session._translate("MessageEv", vote) == [PollVoted("POLL1", GROUP, BOB, [])]


async def test_a_vote_on_a_poll_from_history_is_named() -> None:
    session = worker(GoStandIn(["Pizza"]))
    created = web.WebMessageInfo(
        key=MessageKey(remoteJID=GROUP, fromMe=False, participant=ALICE, ID="OLD"),
        message=wa.Message(pollCreationMessageV2=poll("Pizza")),
        messageTimestamp=T0,
    )
    sync = HistorySyncEv(
        Data=hs.HistorySync(
            conversations=[hs.Conversation(ID=GROUP, messages=[hs.HistorySyncMsg(message=created)])]
        )
    )
    [stored] = await session._translate("HistorySyncEv", sync)
    assert isinstance(stored, MessageReceived)
    assert stored.type == "poll"
    assert stored.history
    vote = message_ev(vote_message("OLD"), source(GROUP, BOB))
    assert await session._translate("MessageEv", vote) == [PollVoted("OLD", GROUP, BOB, ["Pizza"])]


async def test_a_vote_on_a_poll_this_worker_never_saw_goes_on_by_hashes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a worker restart its memory of polls is empty: the vote is still decrypted
    (the poll's secret is in whatsmeow's store) and its options go to the core as
    hashes; one the known poll lacks, or one that cannot be decrypted, is logged."""
    caplog.set_level(logging.INFO, "openwa.whatsmeow.worker")
    client = GoStandIn(["Burger"])
    session = worker(client)
    vote = message_ev(vote_message("UNSEEN"), source(GROUP, BOB))
    burger = hashlib.sha256(b"Burger").hexdigest()
    assert await session._translate("MessageEv", vote) == [
        PollVoted("UNSEEN", GROUP, BOB, [], option_hashes=[burger])
    ]
    assert client.decrypted == [vote]
    session.memory.remember_poll(
        "UNSEEN", translate.poll_options(wa.Message(pollCreationMessage=poll("Pizza"))) or {}
    )
    assert await session._translate("MessageEv", vote) == []  # "Burger" is no option
    offline = worker(GoStandIn(["Pizza"]), connected=False)
    offline.memory.polls.update(session.memory.polls)
    assert await offline._translate("MessageEv", vote) == []
    logged = caplog.text
    assert "names an option the poll lacks" in logged
    assert "could not be decrypted" in logged


# ---------------------------------------------------------------------------------------
# Message types


def test_a_round_video_is_a_video_downloaded_as_one() -> None:
    ptv = wa.VideoMessage(mimetype="video/mp4", fileLength=11, caption="hi")
    found = inbound(wa.Message(ptvMessage=ptv))
    assert found is not None
    assert found.event.type == "video"
    assert found.event.content == {"caption": "hi"}
    assert found.media == MediaRef("video/mp4", 11)
    wrapped = wa.Message(ephemeralMessage=wa.FutureProofMessage(message=wa.Message(ptvMessage=ptv)))
    assert translate.downloadable(wrapped) == wa.Message(videoMessage=ptv)


async def test_the_worker_downloads_a_round_video(tmp_path: Path) -> None:
    session = worker(transfer_dir=tmp_path)
    ptv = wa.VideoMessage(mimetype="video/mp4", fileLength=11)
    # Reported once downloaded, off the session's event path.
    assert await session._translate("MessageEv", message_ev(wa.Message(ptvMessage=ptv))) == []
    event = await asyncio.wait_for(session.host.emitted.get(), 10)  # type: ignore[attr-defined]
    assert isinstance(event, MessageReceived)
    assert event.type == "video"
    assert event.media is not None
    assert event.media.path is not None
    assert event.media.path.read_bytes() == b"video bytes"


def test_a_live_location() -> None:
    live = wa.LiveLocationMessage(
        degreesLatitude=-6.2,
        degreesLongitude=106.8,
        accuracyInMeters=12,
        speedInMps=1.5,
        sequenceNumber=3,
        caption="on my way",
    )
    event = event_of(wa.Message(liveLocationMessage=live))
    assert event.type == "live_location"
    assert event.content == {
        "location": {
            "latitude": -6.2,
            "longitude": 106.8,
            "accuracyMeters": 12,
            "speedMps": 1.5,
            "sequence": 3,
        },
        "caption": "on my way",
    }


def test_a_group_invite() -> None:
    invite = wa.GroupInviteMessage(
        groupJID=GROUP, inviteCode="AbCd", inviteExpiration=T0, groupName="Team", caption="join"
    )
    event = event_of(wa.Message(groupInviteMessage=invite))
    assert event.type == "invite"
    assert event.content == {
        "invite": {
            "groupId": GROUP,
            "code": "AbCd",
            "groupName": "Team",
            "expiresAt": at(T0).isoformat(),
        },
        "caption": "join",
    }


_FLOW = wa.InteractiveResponseMessage.NativeFlowResponseMessage
_REPLIES = {
    "buttons": wa.Message(
        buttonsResponseMessage=wa.ButtonsResponseMessage(
            selectedButtonID="b1", selectedDisplayText="Yes"
        )
    ),
    "list": wa.Message(
        listResponseMessage=wa.ListResponseMessage(
            title="Large",
            singleSelectReply=wa.ListResponseMessage.SingleSelectReply(selectedRowID="r2"),
        )
    ),
    "template": wa.Message(
        templateButtonReplyMessage=wa.TemplateButtonReplyMessage(
            selectedID="t3", selectedDisplayText="Call me"
        )
    ),
    "interactive": wa.Message(
        interactiveResponseMessage=wa.InteractiveResponseMessage(
            nativeFlowResponseMessage=_FLOW(name="flow4"),
            body=wa.InteractiveResponseMessage.Body(text="Sent"),
        )
    ),
}


@pytest.mark.parametrize(
    ("kind", "chosen", "text"),
    [
        ("buttons", "b1", "Yes"),
        ("list", "r2", "Large"),
        ("template", "t3", "Call me"),
        ("interactive", "flow4", "Sent"),
    ],
)
def test_button_replies(kind: str, chosen: str, text: str) -> None:
    event = event_of(_REPLIES[kind])
    assert event.type == "button_reply"
    assert event.content == {"text": text, "buttonReply": {"id": chosen, "text": text}}


@pytest.mark.parametrize(
    ("kind", "pinned"),
    [(wa.PinInChatMessage.PIN_FOR_ALL, True), (wa.PinInChatMessage.UNPIN_FOR_ALL, False)],
)
def test_pins(kind: int, pinned: bool) -> None:
    pin = wa.PinInChatMessage(key=MessageKey(remoteJID=GROUP, ID="TARGET"), type=kind)
    event = event_of(wa.Message(pinInChatMessage=pin), source(GROUP, BOB))
    assert (event.type, event.content) == (
        "pin",
        {"pin": {"messageId": "TARGET", "pinned": pinned}},
    )


def test_an_encrypted_reaction_is_skipped_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "openwa.whatsmeow.translate")
    enc = wa.EncReactionMessage(
        targetMessageKey=MessageKey(ID="TARGET"), encPayload=b"x", encIV=b"y"
    )
    assert inbound(wa.Message(encReactionMessage=enc)) is None
    assert "encrypted reaction to TARGET" in caplog.text


def test_a_plain_reaction_still_is_one() -> None:
    msg = wa.Message(reactionMessage=wa.ReactionMessage(key=MessageKey(ID="T"), text="👍"))
    assert event_of(msg) == ReactionReceived("T", ALICE, ALICE, "👍")


def test_a_placeholder_is_undecryptable() -> None:
    msg = wa.Message(
        placeholderMessage=wa.PlaceholderMessage(type=wa.PlaceholderMessage.MASK_LINKED_DEVICES)
    )
    event = event_of(msg)
    assert (event.type, event.content) == ("undecryptable", {"reason": "placeholder"})


@pytest.mark.parametrize(
    ("unavailable", "reason"), [(True, "unavailable"), (False, "decryption_failed")]
)
def test_an_undecryptable_message(unavailable: bool, reason: str) -> None:
    info = neonize.MessageInfo(
        MessageSource=source(GROUP, BOB), ID="U1", Timestamp=T0 * 1000, Pushname="Bob"
    )
    found = translate.undecryptable(UndecryptableMessageEv(Info=info, IsUnavailable=unavailable))
    assert found is not None
    assert found.event == MessageReceived(
        "U1", GROUP, BOB, "undecryptable", {"reason": reason}, at(T0), push_name="Bob"
    )


def test_a_hidden_undecryptable_message_is_skipped() -> None:
    info = neonize.MessageInfo(MessageSource=source(), ID="U2")
    hidden = UndecryptableMessageEv(
        Info=info, DecryptFailMode=neonize.UndecryptableMessage.DECRYPT_FAIL_HIDE
    )
    assert translate.undecryptable(hidden) is None


def test_anything_else_is_unknown_with_its_raw_type() -> None:
    event = event_of(wa.Message(eventMessage=wa.EventMessage(name="Party")))
    assert (event.type, event.content, event.raw_type) == ("unknown", {}, "eventMessage")


# ---------------------------------------------------------------------------------------
# LID addressing


def test_a_lid_sender_in_a_group_is_named_by_phone_with_the_lid_alongside() -> None:
    src = source(GROUP, BOB_LID, sender_alt=BOB, lid=True)
    found = inbound(wa.Message(conversation="hi"), src)
    assert found is not None
    event = found.event
    assert (event.chat_id, event.sender, event.sender_lid, event.chat_lid) == (
        GROUP,
        BOB,
        BOB_LID,
        None,
    )
    assert found.lids == ((BOB, BOB_LID),)


def test_a_phone_sender_with_a_lid_alternative() -> None:
    src = source(GROUP, BOB, sender_alt=BOB_LID)
    event = event_of(wa.Message(conversation="hi"), src)
    assert (event.sender, event.sender_lid) == (BOB, BOB_LID)


def test_a_lid_is_paired_only_with_a_phone_number_both_of_digits() -> None:
    """An alternative that is no phone number's address (a group, a name) or a LID that
    is not digits pairs with nothing: it would map a LID onto a group."""
    for sender, alt in [
        (BOB_LID, GROUP),
        (GROUP, BOB_LID),
        (BOB_LID, "bob@s.whatsapp.net"),
        ("bob@lid", BOB),
    ]:
        event = event_of(wa.Message(conversation="hi"), source(GROUP, sender, sender_alt=alt))
        assert (event.sender, event.sender_lid) == (sender, None), (sender, alt)


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        (source(ALICE_LID, sender_alt=ALICE, lid=True), (ALICE, ALICE_LID, ALICE, ALICE_LID)),
        (
            source(ALICE_LID, ME_LID, from_me=True, recipient_alt=ALICE, sender_alt=ME, lid=True),
            (ALICE, ALICE_LID, ME, ME_LID),
        ),
        (source(ALICE_LID, lid=True), (ALICE_LID, None, ALICE_LID, None)),
    ],
    ids=["theirs", "own-from-the-phone", "no-alternative"],
)
def test_a_lid_direct_chat_is_the_phone_chat_when_whatsapp_gives_the_number(
    src: Any, expected: tuple[str, str | None, str, str | None]
) -> None:
    """(chat, chat LID, sender, sender LID); without the number the LID stays."""
    event = event_of(wa.Message(conversation="hi"), src)
    assert (event.chat_id, event.chat_lid, event.sender, event.sender_lid) == expected


async def test_the_worker_reports_each_new_lid_pair_once_before_the_message() -> None:
    session = worker()
    src = source(GROUP, BOB_LID, sender_alt=BOB, lid=True)
    first = await session._translate(
        "MessageEv", message_ev(wa.Message(conversation="1"), src, id="A")
    )
    assert first[0] == ContactUpdated(BOB, lid=BOB_LID)
    assert isinstance(first[1], MessageReceived)
    assert first[1].sender == BOB
    again = await session._translate(
        "MessageEv", message_ev(wa.Message(conversation="2"), src, id="B")
    )
    assert [type(e) for e in again] == [MessageReceived]
    dm = source(ALICE_LID, sender_alt=ALICE, lid=True)
    third = await session._translate(
        "MessageEv", message_ev(wa.Message(conversation="3"), dm, id="C")
    )
    assert third[0] == ContactUpdated(ALICE, lid=ALICE_LID)
    assert len(third) == 2
    session.memory.own = ME  # the account's own pair is remembered, not reported
    mine = source(ALICE_LID, ME_LID, from_me=True, recipient_alt=ALICE, sender_alt=ME, lid=True)
    fourth = await session._translate("MessageEv", message_ev(wa.Message(conversation="4"), mine))
    assert [type(e) for e in fourth] == [MessageReceived]
    assert session.memory.phone_of(ME_LID) == ME


async def test_the_worker_reports_a_changed_push_name() -> None:
    session = worker()

    async def named(name: str, id: str) -> list[EngineEvent]:
        return await session._translate(
            "MessageEv", message_ev(wa.Message(conversation="x"), id=id, Pushname=name)
        )

    assert [type(e) for e in await named("Ali", "1")] == [MessageReceived]
    assert [type(e) for e in await named("Ali", "2")] == [MessageReceived]
    changed = await named("Alice", "3")
    assert changed[0] == ContactUpdated(ALICE, push_name="Alice")


def participant(phone: str, lid: str, *, by_lid: bool, admin: bool = False) -> Any:
    if by_lid:
        return neonize.GroupParticipant(JID=jid(lid), PhoneNumber=jid(phone), IsAdmin=admin)
    return neonize.GroupParticipant(JID=jid(phone), LID=jid(lid), IsAdmin=admin)


def test_group_info_names_members_and_owner_by_phone() -> None:
    info = neonize.GroupInfo(
        JID=jid(GROUP),
        OwnerJID=jid(ALICE_LID),
        OwnerPN=jid(ALICE),
        GroupName=neonize.GroupName(Name="Team"),
        Participants=[
            participant(ALICE, ALICE_LID, by_lid=True, admin=True),
            participant(BOB, BOB_LID, by_lid=False),
            neonize.GroupParticipant(JID=jid("100000000000003@lid")),
        ],
    )
    group = translate.group_info(info)
    assert group.owner == ALICE
    assert group.participants == [
        {"id": ALICE, "role": "admin", "lid": ALICE_LID},
        {"id": BOB, "role": "member", "lid": BOB_LID},
        {"id": "100000000000003@lid", "role": "member"},
    ]
    assert translate.group_lids(info) == [(ALICE, ALICE_LID), (BOB, BOB_LID)]


async def test_group_changes_name_lid_members_by_phone() -> None:
    session = worker(GoStandIn(phones={"100000000000003@lid": "6283333333333@s.whatsapp.net"}))
    joined = JoinedGroupEv(
        GroupInfo=neonize.GroupInfo(
            JID=jid(GROUP), Participants=[participant(BOB, BOB_LID, by_lid=True)]
        ),
        Sender=jid(ALICE_LID),
        SenderPN=jid(ALICE),
    )
    assert await session._translate("JoinedGroupEv", joined) == [
        ContactUpdated(BOB, lid=BOB_LID),
        GroupUpdated(GROUP, "join", by=ALICE),
    ]
    change = GroupInfoEv(
        JID=jid(GROUP),
        Sender=jid(BOB_LID),
        Join=[jid("100000000000003@lid"), jid("100000000000004@lid")],
    )
    # BOB from what the session learned, the third from whatsmeow's store (told first,
    # so its LID chat merges: before, kept silently), the fourth unknown anywhere (stays
    # a LID).
    assert await session._translate("GroupInfoEv", change) == [
        ContactUpdated("6283333333333@s.whatsapp.net", lid="100000000000003@lid"),
        GroupUpdated(
            GROUP,
            "add",
            ["6283333333333@s.whatsapp.net", "100000000000004@lid"],
            by=BOB,
        ),
    ]
    assert session.memory.phone_of("100000000000003@lid") == "6283333333333@s.whatsapp.net"
    # Told once: the next change naming it has nothing new to tell.
    again = GroupInfoEv(JID=jid(GROUP), Sender=jid(BOB_LID), Leave=[jid("100000000000003@lid")])
    assert await session._translate("GroupInfoEv", again) == [
        GroupUpdated(GROUP, "remove", ["6283333333333@s.whatsapp.net"], by=BOB)
    ]


# ---------------------------------------------------------------------------------------
# Presence and calls


def test_presence() -> None:
    away = PresenceEv(From=jid(ALICE), Unavailable=True, LastSeen=T0)
    assert notices.presence(away) == PresenceUpdated(ALICE, ALICE, "unavailable", at(T0))
    hidden = PresenceEv(From=jid(ALICE), Unavailable=True)
    assert notices.presence(hidden) == PresenceUpdated(ALICE, ALICE, "unavailable")
    assert notices.presence(PresenceEv(From=jid(ALICE))) == PresenceUpdated(
        ALICE, ALICE, "available"
    )
    assert notices.presence(PresenceEv()) is None


@pytest.mark.parametrize(
    ("state", "media", "expected"),
    [
        (neonize.ChatPresence.COMPOSING, neonize.ChatPresence.TEXT, "composing"),
        (neonize.ChatPresence.COMPOSING, neonize.ChatPresence.AUDIO, "recording"),
        (neonize.ChatPresence.PAUSED, neonize.ChatPresence.TEXT, "paused"),
    ],
)
def test_chat_presence(state: int, media: int, expected: str) -> None:
    event = ChatPresenceEv(
        MessageSource=source(GROUP, BOB_LID, sender_alt=BOB), State=state, Media=media
    )
    assert notices.chat_presence(event) == PresenceUpdated(GROUP, BOB, expected)


async def test_the_worker_names_a_lid_presence_by_phone() -> None:
    session = worker()
    session.memory.learn([(ALICE, ALICE_LID)])
    away = PresenceEv(From=jid(ALICE_LID), Unavailable=True, LastSeen=T0)
    assert await session._translate("PresenceEv", away) == [
        PresenceUpdated(ALICE, ALICE, "unavailable", at(T0))
    ]


def call_meta(**fields: Any) -> Any:
    return neonize.BasicCallMeta(callID="CALL1", timestamp=T0, **fields)


def node(tag: str, *children: Any) -> Any:
    return neonize.Node(Tag=tag, Nodes=list(children))


@pytest.mark.parametrize(("video", "expected"), [(True, True), (False, False)])
def test_a_call_offer(video: bool, expected: bool) -> None:
    media = [node("audio"), *([node("video")] if video else [])]
    offer = CallOfferEv(
        basicCallMeta=call_meta(**{"from": jid(ALICE)}, callCreator=jid(ALICE)),
        data=node("offer", *media),
    )
    assert notices.call_received(offer) == CallReceived("CALL1", ALICE, expected, False, at(T0))


def test_a_call_from_a_lid_is_named_by_phone() -> None:
    offer = CallOfferEv(
        basicCallMeta=call_meta(callCreator=jid(ALICE_LID), callCreatorAlt=jid(ALICE)),
        data=node("offer", node("audio")),
    )
    assert notices.call_received(offer) == CallReceived("CALL1", ALICE, False, False, at(T0))
    assert notices.call_lids(offer) == [(ALICE, ALICE_LID)]


def test_a_group_call_notice() -> None:
    notice = CallOfferNoticeEv(
        basicCallMeta=call_meta(**{"from": jid(BOB)}), media="video", type="group"
    )
    assert notices.call_received(notice) == CallReceived("CALL1", BOB, True, True, at(T0))


async def test_the_worker_reports_calls_with_their_lid_pair() -> None:
    session = worker()
    offer = CallOfferEv(
        basicCallMeta=call_meta(callCreator=jid(ALICE_LID), callCreatorAlt=jid(ALICE)),
        data=node("offer"),
    )
    assert await session._translate("CallOfferEv", offer) == [
        ContactUpdated(ALICE, lid=ALICE_LID),
        CallReceived("CALL1", ALICE, False, False, at(T0)),
    ]


# ---------------------------------------------------------------------------------------
# Hostile and partial reports


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("MessageEv", MessageEv()),
        ("MessageEv", MessageEv(Info=neonize.MessageInfo(MessageSource=source()))),
        ("UndecryptableMessageEv", UndecryptableMessageEv()),
        ("ReceiptEv", ReceiptEv(Type=neonize.Receipt.READ_SELF, MessageIDs=["X"])),
        ("PresenceEv", PresenceEv()),
        ("ChatPresenceEv", ChatPresenceEv()),
        ("CallOfferEv", CallOfferEv()),
        ("CallOfferNoticeEv", CallOfferNoticeEv()),
        ("GroupInfoEv", GroupInfoEv()),
        ("JoinedGroupEv", JoinedGroupEv()),
        ("HistorySyncEv", HistorySyncEv()),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_empty_reports_translate_to_nothing_usable(kind: str, event: Any) -> None:
    out = await worker()._translate(kind, event)
    for item in out:
        assert not isinstance(item, (MessageAck, ReadBySelf, PresenceUpdated, CallReceived))


async def test_one_bad_report_never_drops_the_next() -> None:
    emitted: list[EngineEvent] = []
    arrived = asyncio.Event()

    async def emit(_session: str, event: EngineEvent) -> None:
        emitted.append(event)
        arrived.set()

    session = worker()
    session.host = SimpleNamespace(  # type: ignore[assignment]
        emit=emit, max_media_bytes=1, go_maps=GoMapsLock()
    )
    session.session_id = "s1"
    session.active = True
    session.queue = asyncio.Queue()
    session.queue.put_nowait(("ReceiptEv", object()))  # not a receipt at all
    session.queue.put_nowait(("MessageEv", message_ev(wa.Message(conversation="ok"))))
    task = asyncio.create_task(session._handle_events())
    try:
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        task.cancel()
    assert isinstance(emitted[0], MessageReceived)
    assert emitted[0].content == {"text": "ok"}


@pytest.mark.parametrize("stopped", [False, True])
async def test_a_connection_stopped_while_its_coming_up_is_told_is_not_said_up(
    stopped: bool,
) -> None:
    """A stop, or a fence, while the worker asks Go who we are for `Connected`: the
    `Disconnected` a fence sends must stay the last word about that connection."""
    session = worker()

    class Answering(LinkedGoStandIn):
        def get_me(self) -> Any:
            if stopped:
                session.generation += 1  # what a stop does, as Go answers
            return super().get_me()

    session.client = Answering()
    session.active, session.announced, session.online = True, False, False
    session.me, session.watchdog = None, None
    session.queue = asyncio.Queue()
    session.queue.put_nowait(("ConnectedEv", None))
    session.queue.put_nowait(("MessageEv", message_ev(wa.Message(conversation="after"))))
    host = session.host
    assert isinstance(host, Host)
    task = asyncio.create_task(session._handle_events())
    try:
        emitted = [await asyncio.wait_for(host.emitted.get(), 10)]
        while not isinstance(emitted[-1], MessageReceived):
            emitted.append(await asyncio.wait_for(host.emitted.get(), 10))
    finally:
        task.cancel()
    up = [Authenticated, Connected]
    assert [type(e) for e in emitted] == [*([] if stopped else up), MessageReceived]
    assert [f["kind"] for f in host.frames] == ["linked"]  # the device is ours either way


# ---------------------------------------------------------------------------------------
# The wire to the API process


@pytest.mark.parametrize(
    "event",
    [
        MessageEdited("M", ALICE, BOB, "new", at(T0), from_me=True, history=True),
        PollVoted("P", GROUP, BOB, ["a", "b"]),
        ReadBySelf(ALICE, ["A", "B"]),
        PresenceUpdated(ALICE, ALICE, "unavailable", at(T0)),
        PresenceUpdated(GROUP, BOB, "composing"),
        CallReceived("C", ALICE, True, False, at(T0)),
        ChatUpdated(ALICE, ephemeral_seconds=86400),
        ContactUpdated(ALICE, push_name="Alice", lid=ALICE_LID),
        MessageAck("M", GROUP, "read", by=BOB),
        MessageRevoked("M", ALICE, ALICE, history=True),
        GroupUpdated(GROUP, "ephemeral", value="86400"),
        MessageReceived(
            "M",
            ALICE,
            ALICE,
            "unknown",
            {},
            at(T0),
            sender_lid=ALICE_LID,
            chat_lid=ALICE_LID,
            raw_type="x",
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_new_reports_cross_the_wire(event: Any) -> None:
    body = pack(encode_event(event))[4:]
    assert decode_event(orjson.loads(body)) == event


def test_history_names_lid_chats_and_senders_by_phone() -> None:
    direct = hs.Conversation(
        ID=ALICE_LID,
        pnJID=ALICE,
        messages=[hs.HistorySyncMsg(message=web_message("D1", wa.Message(conversation="hi")))],
    )
    in_group = web.WebMessageInfo(
        key=MessageKey(remoteJID=GROUP, participant="100000000000002:3@lid", ID="G1"),
        message=wa.Message(conversation="hello"),
        messageTimestamp=T0,
    )
    group = hs.Conversation(ID=GROUP, messages=[hs.HistorySyncMsg(message=in_group)])
    data = hs.HistorySync(
        conversations=[direct, group],
        phoneNumberToLidMappings=[hs.PhoneNumberToLIDMapping(pnJID=BOB, lidJID=BOB_LID)],
        pushnames=[hs.Pushname(ID=BOB_LID, pushname="Bob")],
    )
    memory = SessionMemory()
    out = history_events(HistorySyncEv(Data=data), memory)
    assert out[:2] == [ContactUpdated(BOB, lid=BOB_LID), ContactUpdated(ALICE, lid=ALICE_LID)]
    first, second = out[2], out[3]
    assert isinstance(first, MessageReceived)
    assert isinstance(second, MessageReceived)
    assert (first.chat_id, first.chat_lid, first.sender, first.sender_lid) == (
        ALICE,
        ALICE_LID,
        ALICE,
        ALICE_LID,
    )
    assert (second.chat_id, second.sender, second.sender_lid) == (GROUP, BOB, BOB_LID)
    assert out[4] == ContactsSeen({BOB: "Bob"})
    assert history_events(HistorySyncEv(Data=data), memory)[:1] != [
        ContactUpdated(BOB, lid=BOB_LID)
    ]


def test_a_time_out_of_range_does_not_lose_the_report() -> None:
    huge = 2**62
    event = event_of(wa.Message(conversation="hi"), ts=huge)
    assert isinstance(event, MessageReceived)
    assert event.content == {"text": "hi"}  # kept, with the time it arrived instead
    assert event.timestamp.tzinfo == UTC
    edited = event_of(edit("ORIG", wa.Message(conversation="x"), ms=huge), ts=T0 * 1000)
    assert edited == MessageEdited("ORIG", ALICE, ALICE, "x", at(T0))
    away = PresenceEv(From=jid(ALICE), Unavailable=True, LastSeen=-5)
    assert notices.presence(away) == PresenceUpdated(ALICE, ALICE, "unavailable")
