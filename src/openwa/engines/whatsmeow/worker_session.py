"""One session inside the whatsmeow worker: its neonize client, its connection thread,
and the ordered translation of what Go reports into our engine events.

Go's callbacks run on Go-owned threads; they only hand their event to the worker's loop
(`loop.call_soon_threadsafe`), where one task per session translates them in order.
neonize's Go side dereferences a client that does not exist (a panic ends the whole
process), so Go is only asked for anything while whatsmeow itself has reported the
client connected (`go_connected`), under the session's `go_lock`, which a stop also takes.
neonize's Go maps are shared by every session of the process: each call into Go also
holds the worker's `GoMapsLock`, shared, and a connect or a stop holds it exclusively.

Media downloads are the exception: one can take minutes, or hang, so each runs on a
thread of its own, bounded by a timeout, outside the event task and the `go_lock` (Go's
map of clients is only read by it, as by a command); a stop waits for the downloads
under way (`go_readers`) before Go's Stop removes the client, at most for the timeout.
A download holds the worker's Go maps shared only as the call starts (`BoundedHold`).
A message with media is therefore reported when its download ended, which may be after
messages that came after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from openwa.engines.base import (
    Authenticated,
    CallReceived,
    Connected,
    ContactsSeen,
    Disconnected,
    EngineEvent,
    Failed,
    GroupUpdated,
    InboundMedia,
    LoggedOut,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    QrUpdated,
    ReactionReceived,
)
from openwa.engines.whatsmeow import history, notices, transfer, translate
from openwa.engines.whatsmeow.go_maps import BoundedHold, GoMapsLock
from openwa.engines.whatsmeow.session_memory import SessionMemory
from openwa.kit.chat_ids import is_lid

log = logging.getLogger("openwa.whatsmeow.worker")

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
_SUBSCRIBED = (
    "PairStatusEv",
    "ConnectedEv",
    "MessageEv",
    "ReceiptEv",
    "GroupInfoEv",
    "JoinedGroupEv",
    "HistorySyncEv",
    "UndecryptableMessageEv",
    "PresenceEv",
    "ChatPresenceEv",
    "CallOfferEv",
    "CallOfferNoticeEv",
    *sorted(_CONNECTION_ENDS),
)
# What says a connection is up: dropped when the connection ended while it was built.
_UP = (Authenticated, Connected)
# Our ids of recent sends by WhatsApp's ids, for acks that come before our database
# has WhatsApp's id (it is stored after the send returns).
_RECENT_SENDS = 5000
_SETTLE_TIMEOUT_S = 5.0
# How long a connect keeps the worker's Go maps to itself when Go gives no sign of being
# past its map writes (no callback, call not returned); a dial through a silent proxy
# would otherwise hold every other session of the worker for a minute. The writes come
# before the dial: measured from the command to the dial reaching a proxy, 3 to 100 ms,
# but about 3 s for a process's first connect (on a loaded 2-core machine).
_CONNECT_EXCLUSIVE_S = 1.0
_FIRST_CONNECT_EXCLUSIVE_S = 5.0
# whatsmeow gives up a dial after a minute: a stop waits that long for a connect to reach
# Go's first callback or return before stopping it anyway.
_DIAL_WAIT_S = 75.0
# A download holds the worker's Go maps shared only this long (or until it ends): Go reads
# its map of clients as the call starts, then may download for minutes, or hang.
_DOWNLOAD_SHARED_S = 1.0
# Inbound media downloads of a worker at once: neonize hands each file over whole, in
# memory (up to MAX_MEDIA_BYTES, and Go's copy besides), each on a thread of its own.
DOWNLOADS_AT_ONCE = 8
# Given-up downloads whose threads still hang in Go (they cannot be stopped) at which the
# worker starts no more: the messages are reported with `mediaError` instead.
STUCK_DOWNLOADS_MAX = 16


class Downloads:
    """The worker's inbound media downloads, bounded (see above): a burst of media
    messages, or downloads that hang, would otherwise take memory and threads without
    end."""

    def __init__(
        self, at_once: int = DOWNLOADS_AT_ONCE, stuck_max: int = STUCK_DOWNLOADS_MAX
    ) -> None:
        self.slots = asyncio.Semaphore(at_once)
        self.stuck_max = stuck_max
        self.stuck = 0  # given up, their threads still running
        self._lock = threading.Lock()

    def give_up(self, ticket: _Ticket) -> bool:
        """The event loop stops waiting for the download (a timeout, a cancellation);
        whether its thread is done with the file, which the caller then removes.

        The thread writes the file after Go answered, and the loop may give up at any
        point of that: removing the file here while the thread had yet to create it left
        the file behind for good (until the engine's transfer directory went). So the
        one that comes second removes it: the loop if the thread was done, else the
        thread once it is (`written`)."""
        with self._lock:
            ticket.given_up = True
            if ticket.started and not ticket.ended:
                self._count(ticket)
            return ticket.written

    def start(self, ticket: _Ticket) -> None:
        """Its thread runs (a download whose thread never started is never stuck)."""
        with self._lock:
            ticket.started = True
            if ticket.given_up:
                self._count(ticket)

    def end(self, ticket: _Ticket) -> bool:
        """A download's thread is done with Go; whether its file is still wanted."""
        with self._lock:
            ticket.ended = True
            if ticket.counted:
                ticket.counted = False
                self.stuck -= 1
            return not ticket.given_up

    def written(self, ticket: _Ticket) -> bool:
        """A download's thread is done with its file (whole, or failed); whether the
        loop still waits for it. If not, the thread removes the file (`give_up`)."""
        with self._lock:
            ticket.written = True
            return not ticket.given_up

    def _count(self, ticket: _Ticket) -> None:
        if not ticket.counted:
            ticket.counted = True
            self.stuck += 1


class _Ticket:
    """One download, between its thread and the event loop (under `Downloads._lock`)."""

    __slots__ = ("counted", "ended", "given_up", "started", "written")

    def __init__(self) -> None:
        self.started = False
        self.ended = False
        self.given_up = False
        self.counted = False  # among the stuck ones
        self.written = False  # the thread is done with the file


class Host(Protocol):
    """What a session needs of its worker."""

    max_media_bytes: int
    max_image_dimension: int
    qr_timeout_s: float
    go_maps: GoMapsLock
    attempts: int  # connection attempts started in the process
    transfer_dir: Path
    download_timeout_s: float
    downloads: Downloads

    async def send_frame(self, frame: dict[str, Any]) -> None: ...

    async def emit(self, session_id: str, event: EngineEvent) -> None: ...


class NotSettled(Exception):
    """The previous connection of a session has not ended yet."""


def jid_text(jid: Any) -> str:
    """whatsmeow's text form of a device JID (`user:device@server`), as in its tables."""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


def jid_from_text(text: str) -> Any:
    from neonize.proto import Neonize_pb2 as neonize

    user, _, server = text.partition("@")
    user, _, device = user.partition(":")
    return neonize.JID(User=user, Server=server, Device=int(device or 0), Integrator=0, RawAgent=0)


def ban_reason(event: Any) -> str:
    from neonize.proto import Neonize_pb2 as neonize

    code = neonize.TemporaryBan.TempBanReason.Name(event.Code)
    expires = datetime.fromtimestamp(time.time() + event.Expire, UTC).isoformat()
    return f"TEMPORARY_BAN: {code}; WhatsApp lifts it in {event.Expire}s, at {expires}"


def connect_failure(event: Any) -> EngineEvent:
    from neonize.proto import Neonize_pb2 as neonize

    reason = neonize.ConnectFailureReason.Name(event.Reason)
    detail = f"{reason}: {event.Message}" if event.Message else reason
    if event.Reason in (neonize.LOGGED_OUT, neonize.MAIN_DEVICE_GONE):
        return LoggedOut(f"LOGGED_OUT: {detail}")
    if event.Reason in (neonize.TEMP_BANNED, neonize.CLIENT_OUTDATED):
        return Failed(detail)
    return Disconnected(f"connect failure: {detail}")


class WorkerSession:
    def __init__(self, host: Host, session_id: str) -> None:
        from neonize.client import NewClient

        self.host = host
        self.session_id = session_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.proxy: str | None = None
        # Show the account online once connected (`markOnline`): WhatsApp then sends
        # presence (typing, and the contacts subscribed to), but the phone gets no
        # notifications while a client is online.
        self.online = False
        self.thread: threading.Thread | None = None
        self.stopping: threading.Thread | None = None
        # Go holds a client for this uuid from a connect until Go's Stop; only Stop
        # ends neonize's connect call (it waits on the client's context even after
        # whatsmeow itself gave up, as after the last QR code).
        self.go_started = False
        self.go_lock = threading.Lock()
        # Downloads reading Go's client outside `go_lock`, which Go's Stop waits for.
        self.go_readers = threading.Condition()
        self.reading = 0
        self.downloads: set[asyncio.Task[None]] = set()
        self.generation = 0
        # The latest connection attempt's exclusive hold of the worker's Go maps.
        self.attempt: BoundedHold | None = None
        self.me: Any = None
        self.go_connected = False
        self.go_socket_up = False
        # Events are handled only while a connection is wanted: what Go reports after
        # a stop belongs to the connection we ended.
        self.active = False
        self.announced = False
        self.waiting_link = False
        self.last_qr = 0.0
        self.sent: OrderedDict[str, str] = OrderedDict()
        self.memory = SessionMemory()
        # One client object for the session's life in this process: neonize stops the
        # Go client of a uuid when its Python object is collected, which would end a
        # newer connection of the same session. Built without a JID so the uuid stays
        # the session id; the device to resume is set before each connect.
        self.client = NewClient("unset", uuid=session_id)
        self._watch_go_calls()
        self._subscribe()
        self.task = asyncio.create_task(self._handle_events())
        self.watchdog: asyncio.Task[None] | None = None

    # Go's threads.

    def push(self, kind: str, payload: Any) -> None:
        """Hand an event to the loop and return at once (called on Go's threads)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _on_qr(self, _client: Any, data: bytes) -> None:
        self.go_socket_up = True  # a QR from Go: its client exists, socket up, unlinked
        self._go_reached()
        self.push("qr", bytes(data).decode())

    def _go_reached(self) -> None:
        attempt = self.attempt
        if attempt is not None and not attempt.reached.is_set():
            attempt.go_reached()

    def _watch_go_calls(self) -> None:
        """Every event Go hands over (the first one, `me`, comes right after `Neonize()`
        read its maps once connected) shows that the connect is past its map writes."""
        execute = self.client.event.execute

        def watched(uuid: Any, binary: Any, size: int, code: int) -> Any:
            self._go_reached()
            return execute(uuid, binary, size, code)

        self.client.event.execute = watched

    def _subscribe(self) -> None:
        from neonize import events as ev

        self.client.event.qr(self._on_qr)
        for name in _SUBSCRIBED:

            def handler(_client: Any, event: Any, name: str = name) -> None:
                if name == "ConnectedEv":
                    self.go_connected = True
                elif name in _CONNECTION_ENDS:
                    self.go_connected = False
                self.push(name, event)

            self.client.event(getattr(ev, name))(handler)

    # Connection.

    def keeps_connection(self) -> bool:
        """Whether a connect would find this session connecting or connected already."""
        return self.active and self.running()

    async def connect(self, location: str, jid: str | None, proxy: str | None) -> bool:
        """Start connecting; whether a new attempt was started."""
        if self.keeps_connection():
            # Still connecting, or connected: once a connection was up whatsmeow
            # reconnects it by itself, so there is nothing to start.
            if self.go_connected:
                self.announced = False  # the runtime wants authenticated, then ready
                self.push("ConnectedEv", None)
            return False
        await self._settle()
        self.client.name = location
        self.client.jid = jid_from_text(jid) if jid else None
        # Without a device to resume, link a new one (even where a shared database
        # holds other sessions' devices).
        self.client.new_device = jid is None
        self.proxy = proxy
        self.active = True
        self.go_started = True
        self.generation += 1
        first = self.host.attempts == 0
        bound = _FIRST_CONNECT_EXCLUSIVE_S if first else _CONNECT_EXCLUSIVE_S
        self.attempt = BoundedHold(self.host.go_maps, bound)
        self.thread = threading.Thread(
            target=self._run,
            args=(self.generation, self.attempt),
            name=f"neonize-{self.session_id}",
        )
        self.thread.daemon = True
        self.thread.start()
        return True

    def _run(self, generation: int, attempt: BoundedHold) -> None:
        from neonize._binder import ProxySettings
        from neonize.exc import NeonizeError

        settings = ProxySettings(proxy_address=self.proxy) if self.proxy else None
        with attempt:
            if generation != self.generation:
                return  # stopped while waiting for the lock: Go was never called
            try:
                self.client.connect(settings)
            except NeonizeError as exc:
                self.push("connect_error", (generation, str(exc)))
            except Exception as exc:  # a bug in neonize must still end as a report
                self.push("connect_error", (generation, f"{type(exc).__name__}: {exc}"))

    async def _settle(self) -> None:
        """A previous connection must have ended before the next starts: Go's Stop
        finds its client by the session's uuid, so it must not outlive it. Waiting is
        bounded; the runtime retries the connect with backoff."""
        for thread in (self.stopping, self.thread):
            if thread is not None and thread.is_alive():
                await asyncio.to_thread(thread.join, _SETTLE_TIMEOUT_S)
                if thread.is_alive():
                    raise NotSettled("the previous connection is still closing")

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
        if self.watchdog is not None:
            self.watchdog.cancel()
        if not self.go_started:
            return  # never connected, or stopped already: Go has no client to stop
        self.go_started = False
        self.stopping = threading.Thread(target=self._stop_go, args=(self.attempt,), daemon=True)
        self.stopping.start()

    def _stop_go(self, attempt: BoundedHold | None) -> None:
        # Go's Stop waits for a dial to end: it waits here, holding nothing, rather than
        # inside Go holding the worker's maps.
        if attempt is not None:
            attempt.reached.wait(_DIAL_WAIT_S)
        with self.go_lock:
            with self.go_readers:
                self.go_readers.wait_for(lambda: not self.reading, self.host.download_timeout_s)
            with self.host.go_maps.exclusive(), contextlib.suppress(Exception):
                self.client.stop()

    @contextlib.contextmanager
    def go_call(self) -> Iterator[None]:
        """Hold what a call into Go needs: the session's lock (no stop under it) and the
        worker's maps, shared."""
        with self.go_lock, self.host.go_maps.shared():
            yield

    @contextlib.contextmanager
    def connected_call(self) -> Iterator[None]:
        """`go_call` for a call that needs the connection to WhatsApp up."""
        with self.go_call():
            if not self.go_connected:
                raise RuntimeError("not connected to WhatsApp")
            yield

    async def close(self) -> None:
        """Stop, and let go of the client for good (the session was deleted)."""
        self.stop()
        # Collecting the client must not stop a later client of the same uuid.
        self.client._stop_finalizer.detach()
        for task in (self.task, *self.downloads):
            task.cancel()
        for task in (self.task, *self.downloads):
            with contextlib.suppress(asyncio.CancelledError):
                await task

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

    def remember_send(self, engine_id: str, our_id: str) -> None:
        self.sent[engine_id] = our_id
        while len(self.sent) > _RECENT_SENDS:
            self.sent.popitem(last=False)

    # Events, in order.

    async def _handle_events(self) -> None:
        while True:
            kind, payload = await self.queue.get()
            if not self.active:
                continue
            generation = self.generation
            try:
                for event in await self._translate(kind, payload):
                    if generation != self.generation and isinstance(event, _UP):
                        # The connection was stopped (a close, a fence) while this was
                        # translated: that it came up is no longer true.
                        continue
                    await self.host.emit(self.session_id, self._our_ids(event))
            except Exception:
                log.exception("event %s of %s failed", kind, self.session_id)

    def _our_ids(self, event: EngineEvent) -> EngineEvent:
        """Name our recent sends by our ids in acks, reactions and revokes."""
        match event:
            case MessageAck(message_id=mid) if mid in self.sent:
                return replace(event, message_id=self.sent[mid])
            case ReactionReceived(message_id=mid) if mid in self.sent:
                return replace(event, message_id=self.sent[mid])
            case MessageRevoked(id=mid) | MessageEdited(id=mid) if mid in self.sent:
                return replace(event, id=self.sent[mid])
            case PollVoted(poll_id=mid) if mid in self.sent:
                return replace(event, poll_id=self.sent[mid])
        return event

    async def _translate(self, kind: str, event: Any) -> list[EngineEvent]:
        from neonize.proto import Neonize_pb2 as neonize

        match kind:
            case "qr":
                self._qr_shown()
                return [QrUpdated(event)]
            case "qr_timeout":
                if not self.waiting_link or event != self.last_qr:
                    return []
                # Go's connect call outlives the expired QR until Go's Stop ends it.
                self.stop()
                return [Failed("QR_TIMEOUT: the QR code was not scanned; start the session again")]
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
                events = [] if self.announced else await self._announce()
                if self.online:
                    await self._show_online()
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
                return [Failed(ban_reason(event))]
            case "ConnectFailureEv":
                return [connect_failure(event)]
            case "ClientOutdatedEv":
                return [Failed("CLIENT_OUTDATED: WhatsApp refuses this whatsmeow version")]
            case "StreamErrorEv":
                return [Disconnected(f"stream error {event.Code}")]
        return await self._translate_content(kind, event)

    async def _translate_content(self, kind: str, event: Any) -> list[EngineEvent]:
        """What users and chats did: messages, receipts, presence, calls, groups."""
        match kind:
            case "MessageEv":
                return await self._message(event)
            case "UndecryptableMessageEv":
                return self._inbound(translate.undecryptable(event))
            case "ReceiptEv":
                chat, sender = translate.source_addresses(event.MessageSource)
                pairs = translate.lid_pairs(chat, sender)
                return [*self.memory.learn(pairs), *notices.receipt_events(event)]
            case "PresenceEv" | "ChatPresenceEv":
                found = (
                    notices.presence(event)
                    if kind == "PresenceEv"
                    else notices.chat_presence(event)
                )
                return [] if found is None else await self._by_phone(found)
            case "CallOfferEv" | "CallOfferNoticeEv":
                call = notices.call_received(event)
                if call is None:
                    return []
                learned = self.memory.learn(notices.call_lids(event))
                return [*learned, *await self._by_phone(call)]
            case "GroupInfoEv":
                changes: list[EngineEvent] = []
                for update in notices.group_updates(event):
                    changes += await self._by_phone(update)
                return changes
            case "JoinedGroupEv":
                joined = notices.joined_group(event)
                events: list[EngineEvent] = [
                    *self.memory.learn(translate.group_lids(event.GroupInfo))
                ]
                if joined is not None:
                    events += await self._by_phone(joined)
                return events
            case "HistorySyncEv":
                return history_events(event, self.memory)
        return []

    def _qr_shown(self) -> None:
        """A QR is up: if no next code and no scan follow in time, say so (whatsmeow
        otherwise leaves the last, expired code showing)."""
        self.waiting_link = True
        self.last_qr = shown = time.monotonic()
        if self.watchdog is not None:
            self.watchdog.cancel()

        async def expire() -> None:
            await asyncio.sleep(self.host.qr_timeout_s)
            self.push("qr_timeout", shown)

        self.watchdog = asyncio.create_task(expire())

    async def _announce(self) -> list[EngineEvent]:
        """Who we are, before `Connected`: the runtime moves to ready only from
        authenticated, on every (re)connection."""
        jid, push_name = None, None
        if self.go_connected:
            with contextlib.suppress(Exception):
                me = await asyncio.to_thread(self._get_me)
                jid, push_name = me.JID, me.PushName or None
        if jid is None or not jid.User:
            jid = self.me or self.client.jid  # the device we linked or resumed
        if jid is None:
            return []
        return await self._linked(jid, push_name)

    async def _show_online(self) -> None:
        """Tell WhatsApp the account is available; a failure is logged, not fatal (the
        session works, only presence stays away)."""

        def send() -> None:
            from neonize.utils.enum import Presence

            with self.connected_call():
                self.client.send_presence(Presence.AVAILABLE)

        try:
            await asyncio.to_thread(send)
        except Exception as exc:
            log.warning("presence available not sent for %s: %s", self.session_id, exc)

    def _get_me(self) -> Any:
        with self.connected_call():
            return self.client.get_me()

    async def _linked(self, jid: Any, push_name: str | None) -> list[EngineEvent]:
        self.me = jid
        self.memory.own = f"{jid.User}@{jid.Server}"
        self.announced = True
        self.waiting_link = False
        if self.watchdog is not None:
            self.watchdog.cancel()
        await self.host.send_frame(
            {"kind": "linked", "session": self.session_id, "jid": jid_text(jid)}
        )
        return [Authenticated(phone_number=jid.User, push_name=push_name)]

    def _inbound(self, inbound: translate.Inbound | None) -> list[EngineEvent]:
        """A translated message, after the LID pairs and name change it revealed (so
        the core merges a `@lid` chat before the message lands in it)."""
        if inbound is None:
            return []
        events: list[EngineEvent] = list(self.memory.learn(inbound.lids))
        received = inbound.event
        match received:
            case MessageReceived(
                from_me=False, history=False, sender=str(who), push_name=str(name)
            ):
                renamed = self.memory.renamed(who, name)
                if renamed is not None:
                    events.append(renamed)
        events.append(received)
        return events

    async def _message(self, event: Any) -> list[EngineEvent]:
        vote = translate.vote_ref(event)
        if vote is not None:
            return await self._vote(event, vote)
        options = translate.poll_options(event.Message)
        if options is not None:
            self.memory.remember_poll(event.Info.ID, options)
        inbound = translate.inbound_message(event)
        events = self._inbound(inbound)
        if inbound is None or inbound.media is None:
            return events
        received = events.pop()
        assert isinstance(received, MessageReceived)
        task = asyncio.create_task(self._with_media(received, inbound.media, event.Message))
        self.downloads.add(task)
        task.add_done_callback(self.downloads.discard)
        return events

    async def _vote(self, event: Any, vote: translate.VoteRef) -> list[EngineEvent]:
        """A poll vote, decrypted by the client (the key is in whatsmeow's store), its
        options named from the poll as we saw it, or passed on as hashes when this
        worker did not see the poll (the core names them from the stored poll)."""
        learned: list[EngineEvent] = list(
            self.memory.learn(translate.lid_pairs(vote.chat, vote.sender))
        )
        options = self.memory.polls.get(vote.poll_id)

        def decrypt() -> Any:
            with self.connected_call():
                return self.client.decrypt_poll_vote(event)

        try:
            decrypted = await asyncio.to_thread(decrypt)
        except Exception as exc:
            log.warning("vote on poll %s could not be decrypted: %s", vote.poll_id, exc)
            return learned
        voted = translate.poll_vote(vote, decrypted.selectedOptions, options)
        if voted is None:
            log.warning("vote on poll %s names an option the poll lacks", vote.poll_id)
            return learned
        return [*learned, voted]

    async def _by_phone(self, event: EngineEvent) -> list[EngineEvent]:
        """Phone ids in place of the LIDs left in events whatsmeow gives no alternative
        for (group changes, presence, calls): from what this session learned, else
        from whatsmeow's own LID store; a mapping found there is reported first (a
        `ContactUpdated`, which merges the LID's chat and contact), as one a message
        brings is. It used to be kept silently: the event named the phone number while
        the LID's chat and messages stayed apart, with no `contact.update`."""
        learned: list[EngineEvent] = []
        phone_of = partial(self._phone_of, learned=learned)
        match event:
            case GroupUpdated():
                participants = [await phone_of(p) or p for p in event.participants]
                event = replace(event, participants=participants, by=await phone_of(event.by))
            case PresenceUpdated():
                event = replace(
                    event,
                    chat_id=await phone_of(event.chat_id) or event.chat_id,
                    sender=await phone_of(event.sender),
                )
            case CallReceived():
                event = replace(event, sender=await phone_of(event.sender) or event.sender)
        return [*learned, event]

    async def _phone_of(self, chat_id: str | None, learned: list[EngineEvent]) -> str | None:
        if not is_lid(chat_id):
            return chat_id
        known = self.memory.phone_of(chat_id)
        if known != chat_id or not self.go_connected:
            return known
        assert chat_id is not None

        def lookup() -> str | None:
            with self.go_call():
                if not self.go_connected:
                    return None
                return translate.chat_id_of(self.client.get_pn_from_lid(translate.jid_of(chat_id)))

        try:
            phone = await asyncio.to_thread(lookup)
        except Exception as exc:  # not in whatsmeow's store: the LID stays
            log.debug("no phone number for %s: %s", chat_id, exc)
            return chat_id
        if not phone or is_lid(phone):
            return chat_id
        learned += self.memory.learn([(phone, chat_id)])
        return phone

    async def _with_media(
        self, received: MessageReceived, ref: translate.MediaRef, message: Any
    ) -> None:
        """Report the message once its media is downloaded, or saying why it is not."""
        try:
            path = await self._download(translate.downloadable(message), ref.size)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer in {self.host.download_timeout_s:g} s"
            log.warning("media download failed for %s: %s", received.id, reason)
            content = {**received.content, "mediaError": f"download failed: {reason}"}
            event: EngineEvent = replace(received, content=content)
        else:
            size = path.stat().st_size
            event = replace(
                received, media=InboundMedia(ref.mimetype, size, ref.filename, path=path)
            )
        try:
            await self.host.emit(self.session_id, event)
        except Exception:
            log.exception("media message %s of %s failed", received.id, self.session_id)

    async def _download(self, message: Any, size: int) -> Path:
        """The media in a new transfer file, or an error (a timeout included)."""
        if size > self.host.max_media_bytes:
            raise ValueError(f"{size} bytes, over MAX_MEDIA_BYTES ({self.host.max_media_bytes})")
        downloads = self.host.downloads
        async with downloads.slots:
            if downloads.stuck >= downloads.stuck_max:
                raise RuntimeError(f"{downloads.stuck} earlier downloads of this worker are stuck")
            path = transfer.new_path(self.host.transfer_dir, "in")
            ticket = _Ticket()

            def fetch() -> None:
                downloads.start(ticket)
                with self.go_readers:
                    if not self.go_connected:
                        downloads.end(ticket)
                        raise RuntimeError("not connected to WhatsApp")
                    self.reading += 1
                try:
                    with BoundedHold(self.host.go_maps, _DOWNLOAD_SHARED_S, exclusive=False):
                        data = bytes(self.client.download_any(message))
                finally:
                    with self.go_readers:
                        self.reading -= 1
                        self.go_readers.notify_all()
                    wanted = downloads.end(ticket)
                if not wanted:
                    return
                try:
                    transfer.write_file(path, data)
                finally:
                    if not downloads.written(ticket):
                        path.unlink(missing_ok=True)  # given up during the write

            try:
                await asyncio.wait_for(on_own_thread(fetch), self.host.download_timeout_s)
            except BaseException:
                if downloads.give_up(ticket):
                    path.unlink(missing_ok=True)
                raise
            return path


def on_own_thread(work: Callable[[], None]) -> asyncio.Future[None]:
    """Run `work` on a daemon thread of its own: a call that hangs in Go holds only that
    thread (the loop's default pool is small, and shared with joins and lookups)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="download", daemon=True).start()
    return done


def history_events(event: Any, memory: SessionMemory | None = None) -> list[EngineEvent]:
    """Stored-not-announced messages, edits and revokes, contact names and the chats'
    settings (archived, pinned, muted, timer) from one history sync chunk; its polls'
    options are remembered for the votes to come."""
    batch = history.history_batch(event)
    out: list[EngineEvent] = []
    if memory is not None:
        for poll_id, options in batch.polls.items():
            memory.remember_poll(poll_id, options)
        out.extend(memory.learn(batch.lids))
    for item in batch.messages:
        if not isinstance(item.event, MessageReceived) or item.media is None:
            out.append(item.event)
            continue
        # Old media is not fetched: a history chunk can name thousands.
        content = {**item.event.content, "mediaError": "not downloaded: media from a history sync"}
        out.append(replace(item.event, content=content))
    if batch.names:
        out.append(ContactsSeen(batch.names))
    out.extend(batch.settings)
    return out
