"""Mock engine: a simulated WhatsApp network for development, demos and every test.

A session shows a QR, links after `MOCK_AUTH_DELAY_MS` and keeps its phone number in
its `AuthStore` like a real engine would, so restore after a restart needs no scan.
Linked mock sessions message each other by phone number; acks advance `delivered`
then `read`, `MOCK_ACK_DELAY_MS` apart; and, like WhatsApp, a recipient drops a
message id it has already received. The transmit log and inboxes are durable
(`MockNetworkStore`), so a resend after a crash is visible, and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import string
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog

from openwa.engines.base import (
    WHATSAPP_CAPABILITIES,
    Authenticated,
    Connected,
    Disconnected,
    EngineClient,
    EngineEvent,
    GroupInfo,
    InboundMedia,
    MessageAck,
    MessageReceived,
    MessageRevoked,
    OutgoingMessage,
    PairingNotAvailable,
    ParticipantResult,
    QrUpdated,
    ReactionReceived,
    SendFailed,
    SendResult,
    SessionContext,
)
from openwa.engines.content import Reaction, to_json
from openwa.engines.mock.groups import MockGroups
from openwa.engines.mock.store import MockNetworkStore, SqlMockDirectory, Stamp, Transmission
from openwa.kit.chat_ids import GROUP_SUFFIX, USER_SUFFIX, phone_of
from openwa.kit.clock import iso, utcnow
from openwa.kit.ids import whatsapp_message_id

MOCK_CAPABILITIES = WHATSAPP_CAPABILITIES | {"mock_control"}
# Numbers under +1 555 0000 are "not on WhatsApp": sends to them fail for good, the way
# a real engine refuses an unknown number.
UNKNOWN_PREFIX = "15550000"


log = structlog.get_logger(__name__)


def _random_phone() -> str:
    """A +1 555 xxx-xxxx number: possible, and no real subscriber's. Never one under
    UNKNOWN_PREFIX, which the network says is not on WhatsApp (one account in 10,000
    got such a number, and every send to it failed)."""
    while True:
        phone = "1555" + "".join(secrets.choice(string.digits) for _ in range(7))
        if not phone.startswith(UNKNOWN_PREFIX):
            return phone


def _pairing_code() -> str:
    alphabet = string.ascii_uppercase + string.digits
    code = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


class MockNetwork:
    """Which mock phones are online in this process, to hand messages over at once.

    A phone whose session runs on another instance gets its messages from its inbox in
    the database: with `poll_s` set (several instances), each instance looks there for
    its online phones' undelivered messages that no one handed over in-process.
    """

    def __init__(
        self, store: MockNetworkStore, directory: SqlMockDirectory, poll_s: float | None = None
    ) -> None:
        self.store = store
        self.directory = directory
        self._online: dict[str, MockClient] = {}
        self._poll_s = poll_s
        self._poller: asyncio.Task[None] | None = None
        self._handed: set[tuple[str, str]] = set()  # (phone, id) handed over by the poller

    def online(self, phone: str) -> MockClient | None:
        return self._online.get(phone)

    def join(self, phone: str, client: MockClient) -> None:
        self._online[phone] = client
        if self._poll_s is not None and self._poller is None:
            self._poller = asyncio.create_task(self._poll(self._poll_s), name="mock-inboxes")

    def leave(self, phone: str, client: MockClient) -> None:
        if self._online.get(phone) is client:
            del self._online[phone]

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.poll_once(utcnow() - timedelta(seconds=every_s))
            except Exception:
                log.exception("mock_inbox_poll_failed")

    async def poll_once(self, before: datetime) -> None:
        """Hand over what waits in online phones' inboxes (from senders elsewhere); our
        side confirms each stored, and drops one it already has."""
        found = await self.store.inboxes(list(self._online), before)
        waiting = {(phone, str(payload.get("id"))) for phone, payload in found}
        self._handed &= waiting  # confirmed ones are no longer waiting
        for phone, payload in found:
            key = (phone, str(payload.get("id")))
            recipient = self._online.get(phone)
            if recipient is None or key in self._handed:
                continue
            if await recipient.receive_live(payload):
                self._handed.add(key)

    async def close(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller


def own_engine_id(message_id: str) -> str:
    """The id the mock network knows one of our sends by in `MOCK_ENGINE_IDS=own`: made
    from ours (in the form of an iPhone's ids), so a resend is still the same message to
    the recipients, yet never equal to ours, as with whatsmeow."""
    return "3A" + hashlib.sha256(b"mock:" + message_id.encode()).hexdigest()[:18].upper()


class MockClient:
    def __init__(
        self,
        context: SessionContext,
        network: MockNetwork,
        auth_delay_s: float,
        ack_delay_s: float,
        *,
        own_ids: bool = False,
    ) -> None:
        self._ctx = context
        self._network = network
        self._auth_delay_s = auth_delay_s
        self._ack_delay_s = ack_delay_s
        self._own_ids = own_ids
        # Under our ids a resend is dropped by the recipient; under ids of its own (as
        # whatsmeow) it would arrive twice.
        self.resends_safely = not own_ids
        self._link_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._awaiting_link = False
        self._phone: str | None = None
        self._push_name: str | None = None
        self.groups_ = MockGroups(self, network)
        self._stamp = Stamp(context.instance, context.epoch)
        self._connection: int | None = None  # its record in the network's log
        # Payloads left in the inbox while held back (`receive_live`), and the messages
        # handed over and not yet confirmed stored (`stored`): handing the inbox over
        # again when the session goes on leaves those out, rather than queueing every
        # one still waiting to be written a second time.
        self._inbox_behind = False
        self._handed: set[str] = set()
        # One inbox hand-over at a time; asked again while one runs, it reads again after.
        self._handing: asyncio.Task[None] | None = None
        self._inbox_again = False
        context.flow.listen(self._flow_changed)

    # Linking.

    async def connect(self) -> None:
        state = await self._ctx.auth.load()
        if state and state.get("phoneNumber"):
            await self._online(state["phoneNumber"], state.get("pushName"))
            return
        self._awaiting_link = True
        qr = f"2@mock,{secrets.token_urlsafe(24)},{self._ctx.session_id}"
        await self._ctx.emit(QrUpdated(qr))
        self._schedule_link(_random_phone(), self._auth_delay_s)

    def _schedule_link(self, phone: str, delay_s: float) -> None:
        self._cancel_link()
        self._link_task = asyncio.create_task(self._link_after(phone, delay_s))

    def _cancel_link(self) -> None:
        if self._link_task is not None and self._link_task is not asyncio.current_task():
            self._link_task.cancel()
        self._link_task = None

    async def _link_after(self, phone: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._link(phone)

    async def _link(self, phone: str) -> None:
        self._awaiting_link = False
        state: dict[str, Any] = {"phoneNumber": phone, "pushName": f"Mock {phone[-4:]}"}
        await self._ctx.auth.save(state)
        await self._online(state["phoneNumber"], state["pushName"])

    async def _online(self, phone: str, push_name: str | None) -> None:
        self._phone = phone
        self._push_name = push_name
        await self._network.directory.register(phone, self._ctx.session_id, push_name)
        if self._connection is None:
            self._connection = await self._network.store.connected(
                self._ctx.session_id, self._stamp
            )
        await self._ctx.emit(Authenticated(phone, push_name))
        await self._ctx.emit(Connected())
        self._network.join(phone, self)
        self._handed.clear()  # a new connection is handed everything not confirmed
        # What reached this phone but was never confirmed stored (it was offline, or the
        # server died in between) arrives now; our side drops what it already has. In a
        # task: a connect runs under the session's lock, which writing reports needs,
        # and handing a large inbox over may wait for them to be written
        # (`_network_report`).
        self._hand_inbox_over(phone)

    def _hand_inbox_over(self, phone: str) -> None:
        if self._handing is not None and not self._handing.done():
            self._inbox_again = True
            return
        self._handing = self._spawn(self._hand_inbox_over_now(phone))

    async def _hand_inbox_over_now(self, phone: str) -> None:
        again = True
        while again:
            self._inbox_again = False
            try:
                for payload in await self._network.store.undelivered(phone):
                    # Waiting first: what was handed over meanwhile is not handed twice.
                    await self._ctx.flow.wait_open()
                    if str(payload.get("id")) not in self._handed:
                        await self.receive(payload)
            except SendFailed:
                return  # the session stopped: its next connect hands the inbox over
            except Exception:
                # It stays in the inbox: the next connect, or the next time this session
                # goes on after being held back, hands it over.
                self._inbox_behind = True
                log.exception("mock_inbox_hand_over_failed", session_id=self._ctx.session_id)
                return
            again = self._inbox_again

    async def receive_live(self, payload: dict[str, Any]) -> bool:
        """Hand a payload over as it arrives, or, while the core is behind with this
        session's reports, not now (False): it stays in the inbox, handed over once the
        session goes on. A sender never waits on its recipients."""
        if not self._ctx.flow.is_open or self._ctx.flow.released:
            self._inbox_behind = True  # (released: the session is stopping; it stays)
            return False
        await self.receive(payload)  # open: it does not wait
        return True

    def _flow_changed(self, is_open: bool) -> None:
        phone, released = self._phone, self._ctx.flow.released
        if not (is_open and self._inbox_behind and not released):
            return
        if phone is not None and self._connection is not None:  # still connected
            self._inbox_behind = False
            self._hand_inbox_over(phone)

    async def disconnect(self) -> None:
        self._awaiting_link = False
        self._cancel_link()
        if self._phone is not None:
            self._network.leave(self._phone, self)
        for task in list(self._tasks):
            task.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._network.store.disconnected(connection, "disconnected")

    async def logout(self) -> None:
        await self.disconnect()
        self._phone = None
        await self._ctx.auth.clear()

    async def request_pairing_code(self, phone_number: str) -> str:
        if not self._awaiting_link:
            raise PairingNotAvailable("the session is not waiting to be linked")
        # As if typed on the phone at once: the account links after the usual delay.
        self._schedule_link(phone_number, self._auth_delay_s)
        return _pairing_code()

    # Messaging.

    @property
    def phone(self) -> str:
        if self._phone is None or self._network.online(self._phone) is not self:
            raise SendFailed("the mock session is not connected")
        return self._phone

    @property
    def jid(self) -> str:
        return self.phone + USER_SUFFIX

    async def send(self, message: OutgoingMessage) -> str | None:
        (result,) = await self.send_many([message])
        if isinstance(result, BaseException):
            raise result
        return result

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Transmit a run of messages in one store transaction, in order; the results of
        the prefix that went, and the first failure (after which nothing is sent)."""
        prepared: list[tuple[OutgoingMessage, Transmission]] = []
        failure: SendFailed | None = None
        for message in messages:
            try:
                prepared.append((message, await self._prepare(message)))
            except SendFailed as exc:
                failure = exc
                break
        if prepared:
            store = self._network.store
            fresh = await store.transmit_many(
                self._ctx.session_id, [t for _, t in prepared], self._stamp
            )
            for (_message, transmission), phones in zip(prepared, fresh, strict=True):
                await self._hand_over(phones, transmission.payload)
            acked = [t for m, t in prepared if not isinstance(m.content, Reaction)]
            if acked:
                self._spawn(self._acks(acked))
        # By default the mock network knows messages by our ids: no engine ids.
        results: list[SendResult] = [t.message_id if self._own_ids else None for _, t in prepared]
        if failure is not None:
            results.append(failure)
        return results

    async def _prepare(self, message: OutgoingMessage) -> Transmission:
        """The network payload of a send: its content's JSON, media beside it."""
        phone = self.phone
        content = to_json(message.content)
        media = content.pop("media", None)
        wire_id = own_engine_id(message.id) if self._own_ids else message.id
        payload: dict[str, Any] = {
            "kind": "reaction" if isinstance(message.content, Reaction) else "message",
            "id": wire_id,
            "chatId": phone + USER_SUFFIX,
            "from": phone + USER_SUFFIX,
            "pushName": self._push_name,
            "type": message.type,
            "content": content,
            "timestamp": iso(utcnow()),
        }
        if media is not None:
            payload["media"] = {**media, "sourceKey": media["key"]}
        if message.chat_id.endswith(GROUP_SUFFIX):
            recipients = await self.groups_.recipients_for_send(message.chat_id)
            payload["chatId"] = message.chat_id
        else:
            recipient = phone_of(message.chat_id)
            if recipient is not None and recipient.startswith(UNKNOWN_PREFIX):
                raise SendFailed(f"{recipient} is not on WhatsApp", retryable=False)
            recipients = [recipient] if recipient else []
        return Transmission(wire_id, message.chat_id, payload, recipients)

    async def _transmit(
        self, chat_id: str, phones: list[str], message_id: str, payload: dict[str, Any]
    ) -> None:
        """Log it as transmitted and put it in each recipient's inbox (a resent id is
        dropped there), in one step; then hand it to the recipients online now."""
        (fresh,) = await self._network.store.transmit_many(
            self._ctx.session_id, [Transmission(message_id, chat_id, payload, phones)], self._stamp
        )
        await self._hand_over(fresh, payload)

    async def _hand_over(self, phones: Sequence[str], payload: dict[str, Any]) -> None:
        """Give a transmitted payload to those of `phones` that are online now; the
        others find it in their inbox when they connect."""
        for phone in phones:
            recipient = self._network.online(phone)
            if recipient is not None:
                await recipient.receive_live(payload)

    async def _acks(self, sent: Sequence[Transmission]) -> None:
        """`delivered` then `read` for each, named as the network knows them (none once
        the session has stopped)."""
        with contextlib.suppress(SendFailed):
            for status in ("delivered", "read"):
                await asyncio.sleep(self._ack_delay_s)
                for transmission in sent:
                    await self._network_report(
                        MessageAck(transmission.message_id, transmission.chat_id, status)
                    )

    async def receive(self, payload: dict[str, Any]) -> None:
        kind = payload.get("kind", "message")
        if kind == "reaction":
            content = payload.get("content") or {}
            await self._network_report(
                ReactionReceived(
                    message_id=content.get("messageId", ""),
                    chat_id=payload["chatId"],
                    sender=payload.get("from"),
                    emoji=content.get("emoji", ""),
                )
            )
            return
        if kind == "revoke":
            await self._network_report(
                MessageRevoked(payload["messageId"], payload["chatId"], payload.get("from"))
            )
            return
        media = payload.get("media")
        await self._network_report(
            MessageReceived(
                id=payload["id"],
                chat_id=payload["chatId"],
                sender=payload.get("from"),
                type=payload.get("type", "text"),
                content=dict(payload.get("content") or {}),
                timestamp=datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")),
                push_name=payload.get("pushName"),
                media=InboundMedia(
                    mimetype=media["mimetype"],
                    size=int(media.get("size") or 0),
                    filename=media.get("filename"),
                    source_key=media.get("sourceKey"),
                )
                if media
                else None,
            )
        )
        self._handed.add(str(payload["id"]))

    async def stored(self, message_ids: list[str]) -> None:
        """Our side has stored incoming messages: the inbox may let go of them."""
        self._handed.difference_update(message_ids)
        if self._phone is not None:
            await self._network.store.mark_delivered(self._phone, message_ids)

    async def revoke(self, chat_id: str, message_id: str) -> None:
        phone = self.phone
        if chat_id.endswith(GROUP_SUFFIX):
            recipients = await self.groups_.recipients_for_send(chat_id)
            origin = chat_id
        else:
            recipients = [p for p in [phone_of(chat_id)] if p]
            origin = phone + USER_SUFFIX
        payload = {
            "kind": "revoke",
            "id": whatsapp_message_id(),
            "messageId": message_id,
            "chatId": origin,
            "from": phone + USER_SUFFIX,
            "timestamp": iso(utcnow()),
        }
        await self._transmit(chat_id, recipients, payload["id"], payload)
        await self._ctx.emit(MessageRevoked(message_id, chat_id, phone + USER_SUFFIX))

    async def mark_read(
        self, chat_id: str, message_ids: list[str], senders: dict[str, str] | None = None
    ) -> None:
        self.phone  # noqa: B018  (must be connected)

    async def set_presence(self, chat_id: str, state: str) -> None:
        self.phone  # noqa: B018  (must be connected)

    async def check_number(self, phone: str) -> str | None:
        self.phone  # noqa: B018  (must be connected)
        # Mock accounts exist, and so does the simulated world outside the mock network,
        # except the "not on WhatsApp" range.
        return None if phone.startswith(UNKNOWN_PREFIX) else phone + USER_SUFFIX

    async def subscribe_presence(self, chat_id: str) -> None:
        self.phone  # noqa: B018  (must be connected; presence comes from `mock/report`)

    async def profile_picture(self, chat_id: str) -> str | None:
        self.phone  # noqa: B018  (must be connected)
        phone = phone_of(chat_id)
        if phone and await self._network.directory.account(phone) is not None:
            return f"https://mock.openwa.invalid/profile/{phone}.jpg"
        return None

    async def groups(self) -> list[GroupInfo]:
        return await self.groups_.all()

    async def group_info(self, group_id: str) -> GroupInfo:
        return await self.groups_.info(group_id)

    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo:
        return await self.groups_.create(subject, participants)

    async def update_group(
        self,
        group_id: str,
        subject: str | None,
        description: str | None,
        settings: dict[str, bool] | None,
    ) -> GroupInfo:
        return await self.groups_.update(group_id, subject, description, settings)

    async def change_participants(
        self, group_id: str, action: str, participants: list[str]
    ) -> list[ParticipantResult]:
        return await self.groups_.change(group_id, action, participants)

    async def invite_code(self, group_id: str) -> str:
        return await self.groups_.invite_code(group_id)

    async def leave_group(self, group_id: str) -> None:
        await self.groups_.leave(group_id)

    async def emit(self, event: EngineEvent) -> None:
        await self._ctx.emit(event)

    async def _network_report(self, event: EngineEvent) -> None:
        """A report as the network hands it over: while the core is behind with this
        session's reports (`engines.flow`), whoever hands it over waits (a `mock/inbound`
        call, this session's own ack task), as a phone's connection stops taking data."""
        await self._ctx.flow.wait_open()
        if self._ctx.flow.released:
            # Let go because the session stopped: what it would hand over has no session
            # left to be written for, so the caller is told (409), not answered 202.
            raise SendFailed("the session stopped")
        await self._ctx.emit(event)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Test and demo control (the `/mock/...` routes).

    async def scan(self) -> None:
        if not self._awaiting_link:
            raise PairingNotAvailable("the session shows no QR code to scan")
        self._cancel_link()
        await self._link(_random_phone())

    async def drop(self, reason: str) -> None:
        await self.disconnect()
        await self._ctx.emit(Disconnected(reason))

    async def inbound(
        self,
        sender: str,
        type_: str,
        content: dict[str, Any],
        media: InboundMedia | None = None,
        *,
        sender_lid: str | None = None,
        chat_id: str | None = None,
    ) -> str:
        """Deliver a message from `sender` (a chat id) as if it came over the network:
        in `chat_id` (a group) or the sender's own chat; with `sender_lid`, as an engine
        that mapped the sender's LID to its phone number reports it."""
        if self._phone is None:
            raise SendFailed("the mock session is not linked")
        message_id = whatsapp_message_id()
        await self._network_report(
            MessageReceived(
                id=message_id,
                chat_id=chat_id or sender,
                sender=sender,
                type=type_,
                content=content,
                timestamp=utcnow(),
                media=media,
                sender_lid=sender_lid,
                chat_lid=None if chat_id else sender_lid,
            )
        )
        return message_id

    async def report(self, report: EngineEvent) -> None:
        """Report what the network would (an edit, a vote, a read on the phone, ...)."""
        if self._phone is None:
            raise SendFailed("the mock session is not linked")
        await self._network_report(report)


class MockEngine:
    name = "mock"
    capabilities = MOCK_CAPABILITIES
    max_sessions: int | None = None

    async def unavailable(self) -> str | None:
        return None

    def __init__(
        self,
        store: MockNetworkStore,
        directory: SqlMockDirectory,
        auth_delay_ms: int = 1500,
        ack_delay_ms: int = 200,
        engine_ids: Literal["ours", "own"] = "ours",
        inbox_poll_s: float | None = None,
    ) -> None:
        self.network = MockNetwork(store, directory, inbox_poll_s)
        self._auth_delay_s = auth_delay_ms / 1000
        self._ack_delay_s = ack_delay_ms / 1000
        # `own` (MOCK_ENGINE_IDS): sends go out under ids of the mock's own, reported as
        # engine ids, so the tests exercise the `engineId` mapping as whatsmeow needs it.
        self._own_ids = engine_ids == "own"

    def client(self, context: SessionContext) -> EngineClient:
        return MockClient(
            context, self.network, self._auth_delay_s, self._ack_delay_s, own_ids=self._own_ids
        )

    async def check(self) -> None:
        return None

    async def forget(self, session_id: str, auth: dict[str, Any] | None) -> None:
        return None  # the mock keeps nothing outside its AuthStore

    async def close(self) -> None:
        await self.network.close()
