"""The whatsmeow worker process: many neonize clients, one per session.

Why a process of its own: neonize blocks a thread per client for the client's whole life,
calls back from Go-owned threads, keeps global Go state and prints to stdout. Here that
all stays away from the API's event loop, and a crash in Go costs a reconnect, not the
server. Callbacks only hand their event to this process's loop
(`loop.call_soon_threadsafe`); each session's events are translated in order by a task of
its own, and every blocking neonize call runs in a thread (`asyncio.to_thread`).

Run by the engine adapter as `python -m openwa.engines.whatsmeow.worker --fd N`; frames go
both ways on that socket (see `protocol`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from openwa.engines.base import (
    Authenticated,
    Connected,
    Disconnected,
    EngineEvent,
    Failed,
    InboundMedia,
    LoggedOut,
    MessageReceived,
    OutgoingMessage,
    QrUpdated,
)
from openwa.engines.whatsmeow import translate
from openwa.engines.whatsmeow.protocol import encode_event, pack, read_frame

log = logging.getLogger("openwa.whatsmeow.worker")


def jid_text(jid: Any) -> str:
    """whatsmeow's text form of a device JID (`user:device@server`), as in its tables."""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


def jid_from_text(text: str) -> Any:
    from neonize.proto import Neonize_pb2 as neonize

    user, _, server = text.partition("@")
    user, _, device = user.partition(":")
    return neonize.JID(
        User=user, Server=server, Device=int(device or 0), Integrator=0, RawAgent=0
    )


# Go's reports after which its client is no longer connected.
_CONNECTION_ENDS = frozenset(
    {
        "DisconnectedEv",
        "LoggedOutEv",
        "StreamReplacedEv",
        "TemporaryBanEv",
        "ConnectFailureEv",
        "ClientOutdatedEv",
        "StreamErrorEv",
    }
)


class CommandError(Exception):
    """A command failed; `kind` tells the API process which exception to raise."""

    def __init__(self, kind: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def _ban_reason(event: Any) -> str:
    from neonize.proto import Neonize_pb2 as neonize

    code = neonize.TemporaryBan.TempBanReason.Name(event.Code)
    expires = datetime.fromtimestamp(time.time() + event.Expire, UTC).isoformat()
    return f"TEMPORARY_BAN: {code}; WhatsApp lifts it in {event.Expire}s, at {expires}"


class WorkerSession:
    """One session's neonize client and the ordered handling of its events."""

    def __init__(self, worker: Worker, session_id: str) -> None:
        from neonize.client import NewClient

        self.worker = worker
        self.session_id = session_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.proxy: str | None = None
        self.thread: threading.Thread | None = None
        self.stopping: threading.Thread | None = None
        self.generation = 0
        self.me: Any = None
        # Set from Go's own callbacks only: whether a live whatsmeow client is connected.
        # neonize's Go side dereferences a missing client (a panic ends the process), so
        # no command reaches Go unless this holds.
        self.go_connected = False
        self.go_socket_up = False
        # Events are handled only while a connection is wanted: what Go reports after
        # a stop belongs to the connection we ended.
        self.active = False
        self.announced = False
        self.waiting_link = False
        # One client object for the session's life in this process: neonize stops the
        # Go client of a uuid when its Python object is collected, which would end a
        # newer connection of the same session. Built without a JID so the uuid stays
        # the session id; the device to resume is set before each connect.
        self.client = NewClient("unset", uuid=session_id)
        self._subscribe()
        self.task = asyncio.create_task(self._handle_events())

    def _push(self, kind: str, payload: Any) -> None:
        """Called on Go's threads: hand over and return at once."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _on_qr(self, _client: Any, data: bytes) -> None:
        self.go_socket_up = True  # a QR from Go: its client exists, socket up, unlinked
        self._push("qr", bytes(data).decode())

    def _subscribe(self) -> None:
        from neonize import events as ev

        self.client.event.qr(self._on_qr)
        for event_type in (
            ev.PairStatusEv,
            ev.ConnectedEv,
            ev.DisconnectedEv,
            ev.LoggedOutEv,
            ev.StreamReplacedEv,
            ev.TemporaryBanEv,
            ev.ConnectFailureEv,
            ev.ClientOutdatedEv,
            ev.StreamErrorEv,
            ev.MessageEv,
            ev.ReceiptEv,
            ev.GroupInfoEv,
            ev.JoinedGroupEv,
            ev.HistorySyncEv,
        ):
            name = event_type.__name__

            def handler(_client: Any, event: Any, name: str = name) -> None:
                if name == "ConnectedEv":
                    self.go_connected = True
                elif name in _CONNECTION_ENDS:
                    self.go_connected = False
                self._push(name, event)

            self.client.event(event_type)(handler)

    # Connection.

    def connect(self, location: str, jid: str | None, proxy: str | None) -> None:
        self.client.name = location
        self.client.jid = jid_from_text(jid) if jid else None
        # Without a device to resume, link a new one (even where a shared database
        # holds other sessions' devices).
        self.client.new_device = jid is None
        self.proxy = proxy
        self.active = True
        self.generation += 1
        self.thread = threading.Thread(
            target=self._run, args=(self.generation,), name=f"neonize-{self.session_id}"
        )
        self.thread.daemon = True
        self.thread.start()

    def _run(self, generation: int) -> None:
        from neonize._binder import ProxySettings
        from neonize.exc import NeonizeError

        settings = ProxySettings(proxy_address=self.proxy) if self.proxy else None
        try:
            self.client.connect(settings)
        except NeonizeError as exc:
            self._push("connect_error", (generation, str(exc)))
        except Exception as exc:  # a bug in neonize must still end as a report
            self._push("connect_error", (generation, f"{type(exc).__name__}: {exc}"))

    def describe(self) -> dict[str, Any]:
        """What this session's client was last told (for operators and tests)."""
        jid = self.client.jid
        return {
            "location": self.client.name,
            "jid": jid_text(jid) if jid is not None else None,
            "proxy": self.proxy,
            "active": self.active,
            "connecting": self.running(),
        }

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """End the connection without waiting for it.

        whatsmeow holds its socket lock while it dials, so Go's Stop waits for a dial to
        end (up to a minute through a silent proxy): it runs on a thread of its own, and
        whatever the ended connection still reports is dropped (`active`, `generation`).
        """
        self.active = False
        self.go_connected = False
        self.go_socket_up = False
        self.generation += 1
        self.waiting_link = False
        self.announced = False
        self.stopping = threading.Thread(target=self._stop_go, daemon=True)
        self.stopping.start()

    def _stop_go(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()

    async def settle(self) -> None:
        """Wait until a previous connection has ended, before starting the next: Go's
        Stop finds its client by the session's uuid, so it must not outlive it."""
        for thread in (self.stopping, self.thread):
            if thread is not None and thread.is_alive():
                await asyncio.to_thread(thread.join)

    async def close(self) -> None:
        self.stop()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    # Events, in order.

    async def _handle_events(self) -> None:
        while True:
            kind, payload = await self.queue.get()
            if not self.active:
                continue
            try:
                for event in await self._translate(kind, payload):
                    await self.worker.emit(self.session_id, event)
            except Exception:
                log.exception("event %s of %s failed", kind, self.session_id)

    async def _translate(self, kind: str, event: Any) -> list[EngineEvent]:
        from neonize.proto import Neonize_pb2 as neonize

        match kind:
            case "qr":
                self.waiting_link = True
                return [QrUpdated(event)]
            case "device_missing":
                self.active = False
                return [
                    LoggedOut(
                        f"DEVICE_MISSING: the linked device {event} is no longer in "
                        "whatsmeow's store; link the session again"
                    )
                ]
            case "connect_error":
                generation, error = event
                if generation != self.generation:
                    return []  # an ended connection's last words
                return [Disconnected(f"connect failed: {error}")]
            case "PairStatusEv":
                if event.Status != neonize.PairStatus.SUCCESS:
                    return [Failed(f"PAIRING_FAILED: {event.Error or 'pairing failed'}")]
                return await self._linked(event.ID, None)
            case "ConnectedEv":
                events: list[EngineEvent] = []
                if not self.announced:
                    events += await self._announce()
                return [*events, Connected()]
            case "DisconnectedEv":
                self.announced = False
                return [Disconnected("connection to WhatsApp lost")]
            case "LoggedOutEv":
                reason = neonize.ConnectFailureReason.Name(event.Reason)
                return [LoggedOut(f"LOGGED_OUT: {reason} (unlinked from the phone or by WhatsApp)")]
            case "StreamReplacedEv":
                return [
                    Failed(
                        "STREAM_REPLACED: another client connected with this device; "
                        "start the session again to take it back"
                    )
                ]
            case "TemporaryBanEv":
                return [Failed(_ban_reason(event))]
            case "ConnectFailureEv":
                return [self._connect_failure(event)]
            case "ClientOutdatedEv":
                return [Failed("CLIENT_OUTDATED: WhatsApp refuses this whatsmeow version")]
            case "StreamErrorEv":
                return [Disconnected(f"stream error {event.Code}")]
            case "MessageEv":
                return await self._message(event)
            case "ReceiptEv":
                return list(translate.receipt_acks(event))
            case "GroupInfoEv":
                return list(translate.group_updates(event))
            case "JoinedGroupEv":
                joined = translate.joined_group(event)
                return [joined] if joined else []
            case "HistorySyncEv":
                return self._history(event)
        return []

    async def _announce(self) -> list[EngineEvent]:
        """Who we are, before `Connected`: the runtime moves to ready only from
        authenticated, on every (re)connection."""
        jid, push_name = None, None
        if self.go_connected:
            with contextlib.suppress(Exception):
                me = await asyncio.to_thread(self.client.get_me)
                jid, push_name = me.JID, me.PushName or None
        if jid is None or not jid.User:
            jid = self.me or self.client.jid  # the device we linked or resumed
        if jid is None:
            return []
        return await self._linked(jid, push_name)

    async def _linked(self, jid: Any, push_name: str | None) -> list[EngineEvent]:
        self.me = jid
        self.announced = True
        self.waiting_link = False
        await self.worker.send_frame(
            {"kind": "linked", "session": self.session_id, "jid": jid_text(jid)}
        )
        return [Authenticated(phone_number=jid.User, push_name=push_name)]

    @staticmethod
    def _connect_failure(event: Any) -> EngineEvent:
        from neonize.proto import Neonize_pb2 as neonize

        reason = neonize.ConnectFailureReason.Name(event.Reason)
        detail = f"{reason}: {event.Message}" if event.Message else reason
        if event.Reason in (neonize.LOGGED_OUT, neonize.MAIN_DEVICE_GONE):
            return LoggedOut(f"LOGGED_OUT: {detail}")
        if event.Reason in (neonize.TEMP_BANNED, neonize.CLIENT_OUTDATED):
            return Failed(detail)
        return Disconnected(f"connect failure: {detail}")

    async def _message(self, event: Any) -> list[EngineEvent]:
        inbound = translate.inbound_message(event)
        if inbound is None:
            return []
        if inbound.media is None or not isinstance(inbound.event, MessageReceived):
            return [inbound.event]
        ref = inbound.media
        try:
            if not self.go_connected:
                raise RuntimeError("not connected to WhatsApp")
            data = await asyncio.to_thread(self.client.download_any, event.Message)
        except Exception as exc:
            log.warning("media download failed for %s: %s", inbound.event.id, exc)
            content = {**inbound.event.content, "mediaError": f"download failed: {exc}"}
            return [_replace_content(inbound.event, content)]
        media = InboundMedia(ref.mimetype, len(data), ref.filename, data=bytes(data))
        return [_with_media(inbound.event, media)]

    def _history(self, event: Any) -> list[EngineEvent]:
        batch = translate.history_batch(event)
        out: list[EngineEvent] = []
        for item in batch.messages:
            assert isinstance(item.event, MessageReceived)
            content = dict(item.event.content)
            if item.media is not None:
                # Old media is not fetched: a history chunk can name thousands.
                content["mediaError"] = "not downloaded: media from a history sync"
            out.append(_replace_content(item.event, content, history=True))
        if batch.names:
            from openwa.engines.base import ContactsSeen

            out.append(ContactsSeen(batch.names))
        return out


def _replace_content(
    event: MessageReceived, content: dict[str, Any], *, history: bool = False
) -> MessageReceived:
    from dataclasses import replace

    return replace(event, content=content, history=history or event.history)


def _with_media(event: MessageReceived, media: InboundMedia) -> MessageReceived:
    from dataclasses import replace

    return replace(event, media=media)


class Worker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sessions: dict[str, WorkerSession] = {}
        self._write_lock = asyncio.Lock()
        self.gone = False

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.gone:
            return
        async with self._write_lock:
            try:
                self.writer.write(pack(frame))
                await self.writer.drain()
            except (ConnectionError, OSError):
                # The API process is gone; reading will see EOF and end this one.
                self.gone = True

    async def emit(self, session_id: str, event: EngineEvent) -> None:
        await self.send_frame({"kind": "event", "session": session_id, **encode_event(event)})

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:
            frame = await read_frame(self.reader)
            if frame is None or frame.get("op") == "shutdown":
                break
            task = asyncio.create_task(self._answer(frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for session in list(self.sessions.values()):
            await session.close()
        # neonize's own connect threads are not daemons and may sit in a dial for a
        # minute; the process is done, so it leaves without joining them.

    async def _answer(self, frame: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"kind": "reply", "id": frame["id"]}
        try:
            reply["result"] = await self.handle(frame["op"], frame.get("args") or {})
        except CommandError as exc:
            reply["error"] = {"kind": exc.kind, "message": str(exc), "retryable": exc.retryable}
        except Exception as exc:
            reply["error"] = {"kind": "refused", "message": str(exc) or type(exc).__name__}
        await self.send_frame(reply)

    def _session(self, args: dict[str, Any]) -> WorkerSession:
        session = self.sessions.get(args["session"])
        if session is None:
            raise CommandError("not_ready", "the session is not running in the worker")
        return session

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "ping":
            return {"pid": os.getpid(), "sessions": len(self.sessions)}
        if op == "connect":
            return await self._connect(args)
        if op == "close":
            session = self.sessions.get(args["session"])
            if session is not None and session.active:
                session.stop()
            return None
        session = self._session(args)
        if op == "inject":
            return await self._inject(session, args)
        if op == "describe":
            return session.describe()
        return await asyncio.to_thread(_command, session, op, args)

    async def _connect(self, args: dict[str, Any]) -> None:
        session_id = args["session"]
        session = self.sessions.get(session_id)
        if session is None:
            session = WorkerSession(self, session_id)
            self.sessions[session_id] = session
        elif session.active and session.running():
            # Still connecting, or connected: whatsmeow reconnects a dropped connection
            # by itself once it was up, so there is nothing to start.
            if session.go_connected:
                session._push("ConnectedEv", None)
            return
        await session.settle()
        jid = args.get("jid")
        if jid and not await asyncio.to_thread(_device_known, args["location"], jid):
            # whatsmeow dereferences a missing device and the Go panic would end this
            # process and every session in it: report the device as gone instead.
            session.active = True
            session._push("device_missing", jid)
            return
        session.connect(args["location"], jid, args.get("proxy"))

    async def _inject(self, session: WorkerSession, args: dict[str, Any]) -> None:
        """Hand a serialized neonize event to the session as if Go had sent it: how the
        tests drive the worker's whole path without WhatsApp."""
        from neonize import events as ev

        data = base64.b64decode(args["data"])
        if args["type"] == "qr":  # the QR callback passes the code itself
            session._push("qr", data.decode())
            return
        event_type = getattr(ev, args["type"])
        session._push(args["type"], event_type.FromString(data))


def _device_known(location: str, jid: str) -> bool:
    from neonize.client import ClientFactory

    devices = ClientFactory.get_all_devices_from_db(location)
    return any(f"{d.JID.User}@{d.JID.Server}" == jid for d in devices)


def _command(session: WorkerSession, op: str, args: dict[str, Any]) -> Any:
    """Blocking neonize calls for one command, on a worker thread."""
    from neonize.exc import NeonizeError

    client = session.client
    if op == "pair":
        if not (session.go_socket_up and session.waiting_link):
            raise CommandError("pairing", "the session is not waiting to be linked")
    elif not session.go_connected:
        raise CommandError("not_ready", "the session is not connected to WhatsApp")
    try:
        return _COMMANDS[op](session, client, args)
    except CommandError:
        raise
    except KeyError as exc:
        raise CommandError("refused", f"unknown command {exc}") from exc
    except NeonizeError as exc:
        kind = "send_failed" if op == "send" else "refused"
        raise CommandError(kind, str(exc) or type(exc).__name__) from exc


def _pair(session: WorkerSession, client: Any, args: dict[str, Any]) -> str:
    code: str = client.PairPhone(args["phone"], True)
    return code


def _send(session: WorkerSession, client: Any, args: dict[str, Any]) -> str:
    message = OutgoingMessage(**args["message"])
    upload = None
    if message.type in translate.MEDIA_TYPES:
        data = base64.b64decode(args["media"])
        upload = client.upload(data, translate.MEDIA_TYPES[message.type])
    built = translate.outgoing_message(message, upload=upload, now_ms=int(time.time() * 1000))
    response = client.send_message(translate.jid_of(message.chat_id), built)
    return str(response.ID)


def _revoke(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    me = client.get_me()
    chat = args["chat"]
    built = translate.revoke_message(chat, args["id"], f"{me.JID.User}@{me.JID.Server}")
    client.send_message(translate.jid_of(chat), built)


def _mark_read(session: WorkerSession, client: Any, args: dict[str, Any]) -> None:
    from neonize.utils.enum import ReceiptType

    chat = translate.jid_of(args["chat"])
    sender = translate.jid_of(args.get("sender") or args["chat"])
    client.mark_read(*args["ids"], chat=chat, sender=sender, receipt=ReceiptType.READ)


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


def _check(session: WorkerSession, client: Any, args: dict[str, Any]) -> str | None:
    for answer in client.is_on_whatsapp(args["phone"]):
        if answer.IsIn:
            return translate.chat_id_of(answer.JID)
    return None


def _picture(session: WorkerSession, client: Any, args: dict[str, Any]) -> str | None:
    info = client.get_profile_picture(translate.jid_of(args["chat"]))
    return str(info.URL) if info is not None and info.URL else None


def _group(info: Any) -> dict[str, Any]:
    group = translate.group_info(info)
    created = group.created_at.isoformat() if group.created_at else None
    return {
        "id": group.id,
        "subject": group.subject,
        "description": group.description,
        "owner": group.owner,
        "participants": group.participants,
        "settings": group.settings,
        "created_at": created,
    }


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
    out = []
    for result in results:
        status = "ok" if not result.Error else f"error_{result.Error}"
        out.append({"id": translate.chat_id_of(result.JID) or "", "status": status})
    return out


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


async def _serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    await Worker(reader, writer).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="whatsmeow-worker %(levelname)s %(name)s: %(message)s",
    )
    # neonize logs whatsmeow's own lines through the `whatsmeow` logger.
    logging.getLogger("whatsmeow").setLevel(args.log_level.upper())
    asyncio.run(_serve(args.fd))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
