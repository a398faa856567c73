"""What whatsmeow reports, through the real worker process, as the API shows it: history
sync, inbound media that cannot be fetched offline, acks for messages WhatsApp knows by
its own ids, group changes."""

from __future__ import annotations

from typing import Any

import pytest
from neonize import events as ev
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.proto.waHistorySync import WAWebProtobufsHistorySync_pb2 as hs
from neonize.proto.waWeb import WAWebProtobufsWeb_pb2 as web
from sqlalchemy import update

from openwa.db.models import MessageRow
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import inject, linked, user_jid
from tests.fixtures.app import Api, wait_for

ANN = "15550101111"
ANN_CHAT = f"{ANN}@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


async def events_of(api: Api, session_id: str, name: str) -> list[dict[str, Any]]:
    params = {"sessions": session_id, "events": name}
    response = await api.request("GET", "/api/events", params=params)
    found: list[dict[str, Any]] = response.json()["data"]["events"]
    return found


def history_message(chat: str, message_id: str, text: str, *, from_me: bool, ts: int) -> Any:
    key = MessageKey(remoteJID=chat, fromMe=from_me, ID=message_id)
    info = web.WebMessageInfo(key=key, message=wa.Message(conversation=text), messageTimestamp=ts)
    return hs.HistorySyncMsg(message=info)


def ann_bootstrap(messages: list[Any], *, unread: int = 0, **fields: Any) -> Any:
    """A link's first history chunk, holding Ann's chat."""
    conversation = hs.Conversation(ID=ANN_CHAT, unreadCount=unread, messages=messages)
    return hs.HistorySync(
        syncType=hs.HistorySync.INITIAL_BOOTSTRAP, conversations=[conversation], **fields
    )


async def synced(api: Api, session_id: str, sync: Any, path: str, count: int) -> Any:
    """The session's `path` list once it holds `count` items, after the sync is injected."""
    await inject(api, session_id, ev.HistorySyncEv(Data=sync))
    found = await wait_for(
        lambda: api.request("GET", f"/api/sessions/{session_id}/{path}"),
        lambda r: len(r.json()["data"]) == count,
        20,
        f"synced {path}",
    )
    return found.json()["data"]


async def test_history_sync_fills_chats_history_and_contacts_without_webhooks(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await linked(wm_api, silent.url)
    sync = ann_bootstrap(
        [
            history_message(ANN_CHAT, "H2", "see you", from_me=True, ts=1_764_000_060),
            history_message(ANN_CHAT, "H1", "hi there", from_me=False, ts=1_764_000_000),
        ],
        pushnames=[hs.Pushname(ID=ANN_CHAT, pushname="Ann")],
    )
    messages = await synced(wm_api, session_id, sync, f"chats/{ANN_CHAT}/messages", 2)
    assert [(m["id"], m["text"], m["fromMe"]) for m in messages] == [
        ("H2", "see you", True),
        ("H1", "hi there", False),
    ]
    chats = (await wm_api.request("GET", f"/api/sessions/{session_id}/chats")).json()["data"]
    assert [(c["id"], c["name"], c["unreadCount"]) for c in chats] == [(ANN_CHAT, "Ann", 0)]
    contact = await wm_api.request("GET", f"/api/sessions/{session_id}/contacts/{ANN_CHAT}")
    assert contact.json()["data"]["pushName"] == "Ann"
    assert await events_of(wm_api, session_id, "message.received") == []


async def test_history_keeps_what_the_phone_has_unread(wm_api: Api, silent: SilentProxy) -> None:
    """The conversation's unread count names its newest messages from others: they stay
    unread (the chat counts them), the rest of the history is read."""
    session_id = await linked(wm_api, silent.url)
    sync = ann_bootstrap(
        [
            history_message(ANN_CHAT, "U4", "mine", from_me=True, ts=1_764_000_400),
            history_message(ANN_CHAT, "U3", "third", from_me=False, ts=1_764_000_300),
            history_message(ANN_CHAT, "U1", "first", from_me=False, ts=1_764_000_100),
            history_message(ANN_CHAT, "U2", "second", from_me=False, ts=1_764_000_200),
        ],
        unread=2,
    )
    # The chat shows from its first stored message: its count is read once all four are.
    await synced(wm_api, session_id, sync, f"chats/{ANN_CHAT}/messages", 4)
    chats = (await wm_api.request("GET", f"/api/sessions/{session_id}/chats")).json()["data"]
    assert [(c["id"], c["unreadCount"]) for c in chats] == [(ANN_CHAT, 2)]


async def test_inbound_media_that_cannot_be_fetched_is_stored_saying_why(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await linked(wm_api, silent.url)
    source = neonize.MessageSource(Chat=user_jid(ANN), Sender=user_jid(ANN))
    info = neonize.MessageInfo(MessageSource=source, ID="IMG1", Timestamp=1_764_000_000_000)
    image = wa.ImageMessage(mimetype="image/jpeg", fileLength=1234, caption="a cat")
    await inject(
        wm_api, session_id, ev.MessageEv(Info=info, Message=wa.Message(imageMessage=image))
    )
    received = await wait_for(
        lambda: events_of(wm_api, session_id, "message.received"), bool, 20, "received"
    )
    data = received[0]["data"]
    assert (data["id"], data["type"], data["caption"]) == ("IMG1", "image", "a cat")
    assert "media" not in data
    assert data["mediaError"].startswith("download failed")
    assert data["timestamp"].startswith("2025-11-24")


async def test_acks_naming_whatsapps_own_id_reach_our_message(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await linked(wm_api, silent.url)
    sent = await wm_api.request(
        "POST",
        f"/api/sessions/{session_id}/messages/text",
        json={"chatId": ANN, "text": "hello"},
    )
    message_id = sent.json()["data"]["id"]
    # What the sender records when whatsmeow hands the message over under its own id.
    async with wm_api.services.db() as db, db.begin():
        await db.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(engine_id="3EB0WHATSAPPID", status="sent")
        )
    receipt = ev.ReceiptEv(
        MessageSource=neonize.MessageSource(Chat=user_jid(ANN), Sender=user_jid(ANN)),
        MessageIDs=["3EB0WHATSAPPID"],
        Type=neonize.Receipt.READ,
    )
    await inject(wm_api, session_id, receipt)
    acks = await wait_for(lambda: events_of(wm_api, session_id, "message.ack"), bool, 20, "ack")
    assert acks[0]["data"] == {"id": message_id, "chatId": ANN_CHAT, "status": "read"}
    message = await wm_api.request("GET", f"/api/sessions/{session_id}/messages/{message_id}")
    assert message.json()["data"]["status"] == "read"


async def test_group_changes_are_announced(wm_api: Api, silent: SilentProxy) -> None:
    session_id = await linked(wm_api, silent.url)
    change = ev.GroupInfoEv(
        JID=user_jid(GROUP.split("@")[0], server="g.us"),
        Sender=user_jid(ANN),
        Name=neonize.GroupName(Name="Trip"),
        Join=[user_jid("15550102222")],
    )
    await inject(wm_api, session_id, change)
    updates = await wait_for(
        lambda: events_of(wm_api, session_id, "group.update"),
        lambda found: len(found) == 2,
        20,
        "group updates",
    )
    assert [(u["data"]["action"], u["data"]["participants"]) for u in updates] == [
        ("subject", []),
        ("add", ["15550102222@s.whatsapp.net"]),
    ]
    assert {u["data"]["groupId"] for u in updates} == {GROUP}
    assert {u["data"]["by"] for u in updates} == {ANN_CHAT}


async def test_commands_on_a_session_not_connected_to_whatsapp_are_refused_clearly(
    wm_api: Api, silent: SilentProxy
) -> None:
    """Linked by events only: Go has no live client, and no command may reach it."""
    session_id = await linked(wm_api, silent.url)
    check = await wm_api.request("GET", f"/api/sessions/{session_id}/contacts/check/{ANN}")
    assert check.status_code == 409, check.text
    assert check.json()["error"]["code"] == "SESSION_NOT_READY"
    groups = await wm_api.request("GET", f"/api/sessions/{session_id}/groups")
    assert groups.status_code == 409, groups.text
    assert (await wm_api.request("GET", "/health/ready")).status_code == 200


async def test_inbound_media_over_the_size_limit_is_not_fetched(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await linked(wm_api, silent.url)
    source = neonize.MessageSource(Chat=user_jid(ANN), Sender=user_jid(ANN))
    info = neonize.MessageInfo(MessageSource=source, ID="DOC1", Timestamp=1_764_000_000_000)
    huge = wm_api.settings.max_media_bytes + 1
    document = wa.DocumentMessage(mimetype="application/pdf", fileLength=huge, fileName="a.pdf")
    message = wa.Message(documentMessage=document)
    await inject(wm_api, session_id, ev.MessageEv(Info=info, Message=message))
    received = await wait_for(
        lambda: events_of(wm_api, session_id, "message.received"), bool, 20, "received"
    )
    assert "over MAX_MEDIA_BYTES" in received[0]["data"]["mediaError"]


# Translation in the worker, whichever database stores it: one database is enough.
@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_lid_senders_reach_the_api_by_phone_number(wm_api: Api, silent: SilentProxy) -> None:
    """One chat per person: a LID direct message lands in the phone-number chat, and a
    LID sender in a group is named by phone."""
    session_id = await linked(wm_api, silent.url)
    ann_lid = user_jid("100000000000001", server="lid")
    group = user_jid(GROUP.split("@")[0], server="g.us")
    direct = neonize.MessageSource(Chat=ann_lid, Sender=ann_lid, SenderAlt=user_jid(ANN))
    in_group = neonize.MessageSource(
        Chat=group, Sender=ann_lid, SenderAlt=user_jid(ANN), IsGroup=True
    )
    for message_id, source in (("L1", direct), ("L2", in_group)):
        info = neonize.MessageInfo(MessageSource=source, ID=message_id, Timestamp=1_764_000_000_000)
        message = wa.Message(conversation=f"hi {message_id}")
        await inject(wm_api, session_id, ev.MessageEv(Info=info, Message=message))
    received = await wait_for(
        lambda: events_of(wm_api, session_id, "message.received"),
        lambda found: len(found) == 2,
        20,
        "messages",
    )
    assert sorted((r["data"]["chatId"], r["data"]["from"]) for r in received) == [
        (GROUP, ANN_CHAT),
        (ANN_CHAT, ANN_CHAT),
    ]
    chats = (await wm_api.request("GET", f"/api/sessions/{session_id}/chats")).json()["data"]
    assert sorted(c["id"] for c in chats) == sorted([ANN_CHAT, GROUP])
