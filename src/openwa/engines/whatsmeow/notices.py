"""Translation of what neonize reports besides messages: receipts, presence, calls and
group changes, into our engine port's reports (pure functions, like `translate`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from neonize.proto import Neonize_pb2 as neonize

from openwa.engines.base import (
    CallReceived,
    GroupUpdated,
    MessageAck,
    PresenceUpdated,
    ReadBySelf,
)
from openwa.engines.whatsmeow.translate import (
    address,
    chat_id_of,
    lid_pairs,
    source_addresses,
    unix_time,
)

# ---------------------------------------------------------------------------------------
# Receipts, presence, calls


_RECEIPTS = {
    neonize.Receipt.DELIVERED: "delivered",
    neonize.Receipt.READ: "read",
    neonize.Receipt.PLAYED: "played",
    neonize.Receipt.SERVER_ERROR: "failed",
}
_READ_ELSEWHERE = (neonize.Receipt.READ_SELF, neonize.Receipt.PLAYED_SELF)


def receipt_events(event: Any) -> list[MessageAck | ReadBySelf]:
    """A neonize `ReceiptEv`: acks for our messages, or inbound messages read on the
    account's own phone (`READ_SELF`). In groups an ack says who read it (`by`)."""
    source = event.MessageSource
    chat, sender = source_addresses(source)
    if chat.id is None:
        return []
    ids = list(event.MessageIDs)
    if event.Type in _READ_ELSEWHERE:
        return [ReadBySelf(chat.id, ids)] if ids else []
    status = _RECEIPTS.get(event.Type)
    if status is None:
        return []
    by = sender.id if source.IsGroup and status in ("read", "played") else None
    return [MessageAck(message_id, chat.id, status, by=by) for message_id in ids]


def receipt_acks(event: Any) -> list[MessageAck]:
    """Only the acks of a `ReceiptEv`."""
    return [e for e in receipt_events(event) if isinstance(e, MessageAck)]


def presence(event: Any) -> PresenceUpdated | None:
    """A neonize `PresenceEv`: someone came online or went away (with when)."""
    who = chat_id_of(event.From)
    if who is None:
        return None
    if event.Unavailable:
        return PresenceUpdated(who, who, "unavailable", unix_time(event.LastSeen))
    return PresenceUpdated(who, who, "available")


def chat_presence(event: Any) -> PresenceUpdated | None:
    """A neonize `ChatPresenceEv`: typing, recording (audio) or stopped, in a chat."""
    chat, sender = source_addresses(event.MessageSource)
    if chat.id is None:
        return None
    if event.State == neonize.ChatPresence.PAUSED:
        state = "paused"
    elif event.Media == neonize.ChatPresence.AUDIO:
        state = "recording"
    else:
        state = "composing"
    return PresenceUpdated(chat.id, sender.id, state)


def _has_child(node: Any, tag: str) -> bool:
    return any(child.Tag == tag for child in node.Nodes)


def call_received(event: Any) -> CallReceived | None:
    """A neonize `CallOfferEv` (one-to-one) or `CallOfferNoticeEv` (group calls)."""
    meta = event.basicCallMeta
    caller = address(meta.callCreator, meta.callCreatorAlt)
    if caller.id is None:
        caller = address(getattr(meta, "from"))
    if caller.id is None or not meta.callID:
        return None
    at = unix_time(meta.timestamp) or datetime.now(UTC)
    if isinstance(event, neonize.CallOfferNotice):
        return CallReceived(
            meta.callID, caller.id, event.media == "video", event.type == "group", at
        )
    video = _has_child(event.data, "video")
    group = _has_child(event.data, "group_info")
    return CallReceived(meta.callID, caller.id, video, group, at)


def call_lids(event: Any) -> list[tuple[str, str]]:
    meta = event.basicCallMeta
    return lid_pairs(address(meta.callCreator, meta.callCreatorAlt))


# ---------------------------------------------------------------------------------------
# Groups


def _jids(jids: Any) -> list[str]:
    return [chat_id for chat_id in (chat_id_of(j) for j in jids) if chat_id]


def _group_values(event: Any) -> list[tuple[str, str | None]]:
    """(action, value) of the changes to a group's own data in a `GroupInfoEv`."""
    changes: list[tuple[str, str | None]] = []
    if event.HasField("Name"):
        changes.append(("subject", event.Name.Name))
    if event.HasField("Topic"):
        changes.append(("description", None if event.Topic.TopicDeleted else event.Topic.Topic))
    if event.HasField("Locked") or event.HasField("Announce"):
        changes.append(("settings", None))
    if event.HasField("Ephemeral"):
        timer = event.Ephemeral.DisappearingTimer if event.Ephemeral.IsEphemeral else 0
        changes.append(("ephemeral", str(timer)))
    if event.HasField("NewInviteLink"):
        changes.append(("invite_link", event.NewInviteLink))
    if event.HasField("Delete"):
        changes.append(("delete", event.Delete.DeletedReason or None))
    for name, action in (("Link", "link"), ("Unlink", "unlink")):
        if event.HasField(name):
            changes.append((action, chat_id_of(getattr(event, name).Group.JID)))
    return changes


def group_updates(event: Any) -> list[GroupUpdated]:
    """Our `group.update`s from a neonize `GroupInfoEv` (one event may hold several).

    Membership-approval changes never reach us: whatsmeow parses them into a field
    neonize 0.5.2's protobuf lacks."""
    group_id = chat_id_of(event.JID)
    if group_id is None:
        return []
    by = chat_id_of(event.Sender)
    updates = [
        GroupUpdated(group_id, action, by=by, value=value) for action, value in _group_values(event)
    ]
    for name, action in (
        ("Join", "add"),
        ("Leave", "remove"),
        ("Promote", "promote"),
        ("Demote", "demote"),
    ):
        participants = _jids(getattr(event, name))
        if participants:
            updates.append(GroupUpdated(group_id, action, participants, by=by))
    return updates


def joined_group(event: Any) -> GroupUpdated | None:
    """A neonize `JoinedGroupEv`: we were added to (or created) a group."""
    group_id = chat_id_of(event.GroupInfo.JID)
    if group_id is None:
        return None
    action = "created" if event.CreateKey else "join"
    return GroupUpdated(group_id, action, by=address(event.Sender, event.SenderPN).id)
