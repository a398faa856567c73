"""The commands the whatsmeow worker runs for the API process: blocking neonize calls,
each on a thread of the worker's pool.

A command reaches Go only while whatsmeow reports the session's client connected (or,
for a pairing code, while it shows a QR), and under the session's `go_lock`, so a stop
cannot remove the client from under it: neonize's Go side dereferences a missing client,
and that panic would end every session of the worker. It also holds the worker's Go maps
shared (`WorkerSession.go_call`): no connect or stop of another session writes them
meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openwa.engines.base import SEND_OUTCOME_UNKNOWN
from openwa.engines.content import Media
from openwa.engines.whatsmeow import go_errors, translate
from openwa.engines.whatsmeow.protocol import encode_group, outgoing_from_wire
from openwa.engines.whatsmeow.worker_session import WorkerSession
from openwa.media import details as media_details


class CommandError(Exception):
    """A command failed; `kind` tells the API process which exception to raise."""

    def __init__(
        self, kind: str, message: str, *, retryable: bool = True, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.code = code


def run_command(
    session: WorkerSession, op: str, args: dict[str, Any], deadline: float = 0.0
) -> Any:
    from neonize.exc import NeonizeError

    command = _COMMANDS.get(op)
    if command is None:
        raise CommandError("refused", f"unknown command {op!r}")
    if op == "send" and args.get("media_path"):
        # ffprobe and ffmpeg take a while: not while holding the session's commands.
        content = outgoing_from_wire(args["message"]).content
        if isinstance(content, Media):
            path = Path(args["media_path"])
            args["details"] = media_details.describe(
                path, content.kind, content.media.mimetype, session.host.max_image_dimension
            )
    with session.go_call():
        if deadline and time.time() > deadline:
            # The API process has given up on it: not done, so it may be retried.
            raise CommandError("not_ready", "the command waited too long in the worker")
        if op == "pair":
            if not (session.go_socket_up and session.waiting_link):
                raise CommandError("pairing", "the session is not waiting to be linked")
        elif not session.go_connected:
            raise CommandError("not_ready", "the session is not connected to WhatsApp")
        try:
            return command(session, session.client, args)
        except NeonizeError as exc:
            if op == "send" and go_errors.send_timed_out(exc):
                # It went out and WhatsApp's answer was lost: never resent by itself.
                raise CommandError(
                    "send_failed", str(exc), retryable=False, code=SEND_OUTCOME_UNKNOWN
                ) from exc
            if op == "send" and go_errors.refused_by_server(exc):
                raise CommandError("send_failed", str(exc), retryable=False) from exc
            kind = "send_failed" if op == "send" else "refused"
            raise CommandError(kind, str(exc) or type(exc).__name__) from exc


def _pair(session: WorkerSession, client: Any, args: dict[str, Any]) -> str:
    code: str = client.PairPhone(args["phone"], True)
    return code


def _send(session: WorkerSession, client: Any, args: dict[str, Any]) -> str:
    message = outgoing_from_wire(args["message"])
    upload = None
    if isinstance(message.content, Media):
        data = Path(args["media_path"]).read_bytes()  # the API process removes it
        upload = client.upload(data, translate.MEDIA_TYPES[message.type])
    built = translate.outgoing_message(
        message, upload=upload, details=args.get("details"), now_ms=int(time.time() * 1000)
    )
    response = client.send_message(translate.jid_of(message.chat_id), built)
    engine_id = str(response.ID)
    session.remember_send(engine_id, message.id)
    return engine_id


def _revoke(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    me = client.get_me()
    chat = args["chat"]
    built = translate.revoke_message(chat, args["id"], f"{me.JID.User}@{me.JID.Server}")
    client.send_message(translate.jid_of(chat), built)


def _mark_read(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    """Receipts name the sender: in a group, one receipt per participant's messages."""
    from neonize.utils.enum import ReceiptType

    chat = args["chat"]
    by_sender: dict[str, list[str]] = {}
    for message_id in args["ids"]:
        sender = (args.get("senders") or {}).get(message_id) or chat
        by_sender.setdefault(sender, []).append(message_id)
    for sender, ids in by_sender.items():
        client.mark_read(
            *ids,
            chat=translate.jid_of(chat),
            sender=translate.jid_of(sender),
            receipt=ReceiptType.READ,
        )


def _presence(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    from neonize.utils.enum import ChatPresence, ChatPresenceMedia

    state = args["state"]
    presence = (
        ChatPresence.CHAT_PRESENCE_PAUSED
        if state == "paused"
        else ChatPresence.CHAT_PRESENCE_COMPOSING
    )
    media = (
        ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO
        if state == "recording"
        else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
    )
    client.send_chat_presence(translate.jid_of(args["chat"]), presence, media)


def _subscribe_presence(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    # WhatsApp sends a contact's presence only to a client that asked for it, and only
    # while that client shows itself online (`markOnline`).
    client.subscribe_presence(translate.jid_of(args["chat"]))


def _check(session: WorkerSession, client: Any, args: dict[str, Any]) -> str | None:
    # whatsmeow's IsOnWhatsApp takes numbers in international form with their `+`.
    phone = "+" + str(args["phone"]).lstrip("+")
    for answer in client.is_on_whatsapp(phone):
        if answer.IsIn:
            return translate.chat_id_of(answer.JID)
    return None


def _picture(session: WorkerSession, client: Any, args: dict[str, Any]) -> str | None:
    try:
        info = client.get_profile_picture(translate.jid_of(args["chat"]))
    except Exception as exc:
        if go_errors.no_picture(exc):
            return None  # none set, or hidden from this account: the same to a client
        raise
    return str(info.URL) if info is not None and info.URL else None


def _group(info: Any) -> dict[str, Any]:
    return encode_group(translate.group_info(info))


def _groups(session: WorkerSession, client: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [_group(info) for info in client.get_joined_groups()]


def _group_info(session: WorkerSession, client: Any, args: dict[str, Any]) -> dict[str, Any]:
    return _group(client.get_group_info(translate.jid_of(args["group"])))


def _create_group(session: WorkerSession, client: Any, args: dict[str, Any]) -> dict[str, Any]:
    members = [translate.jid_of(p) for p in args["participants"]]
    return _group(client.create_group(args["subject"], members))


def _update_group(session: WorkerSession, client: Any, args: dict[str, Any]) -> dict[str, Any]:
    group = translate.jid_of(args["group"])
    if args.get("subject") is not None:
        client.set_group_name(group, args["subject"])
    if args.get("description") is not None:
        current = client.get_group_info(group)
        client.set_group_topic(group, current.GroupTopic.TopicID, "", args["description"])
    settings = args.get("settings") or {}
    if "announce" in settings:
        client.set_group_announce(group, bool(settings["announce"]))
    if "locked" in settings:
        client.set_group_locked(group, bool(settings["locked"]))
    return _group(client.get_group_info(group))


def _participants(
    session: WorkerSession, client: Any, args: dict[str, Any]
) -> list[dict[str, str]]:
    from neonize.utils.enum import ParticipantChange

    change = {
        "add": ParticipantChange.ADD,
        "remove": ParticipantChange.REMOVE,
        "promote": ParticipantChange.PROMOTE,
        "demote": ParticipantChange.DEMOTE,
    }[args["action"]]
    members = [translate.jid_of(p) for p in args["participants"]]
    results = client.update_group_participants(translate.jid_of(args["group"]), members, change)
    return [
        {
            "id": translate.chat_id_of(result.JID) or "",
            "status": translate.participant_status(args["action"], result.Error),
        }
        for result in results
    ]


def _invite(session: WorkerSession, client: Any, args: dict[str, Any]) -> str:
    link: str = client.get_group_invite_link(translate.jid_of(args["group"]))
    return link.rstrip("/").rsplit("/", 1)[-1]


def _leave(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    client.leave_group(translate.jid_of(args["group"]))


def _logout(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    client.logout()


_COMMANDS: dict[str, Any] = {
    "pair": _pair,
    "send": _send,
    "revoke": _revoke,
    "mark_read": _mark_read,
    "presence": _presence,
    "subscribe_presence": _subscribe_presence,
    "check": _check,
    "picture": _picture,
    "groups": _groups,
    "group_info": _group_info,
    "create_group": _create_group,
    "update_group": _update_group,
    "participants": _participants,
    "invite": _invite,
    "leave": _leave,
    "logout": _logout,
}
