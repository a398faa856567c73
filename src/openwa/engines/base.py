"""The engine port: what a WhatsApp engine must offer, and the events it reports.

Designed for the real engines to come (whatsmeow in a worker process, Baileys and
whatsapp-web.js behind a Node bridge):
- An engine never owns its auth state: it reads and writes it through the `AuthStore`
  that the composition root hands it, so a linked device survives restarts and can
  move between instances.
- An engine never retries a lost connection by itself (none of the real ones do);
  it reports `Disconnected` and the session runtime reconnects with backoff.
- Progress is reported as events through `emit`, never by return values, because
  real engines report from their own threads and processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from openwa.engines.content import Content
from openwa.engines.flow import ReportFlow


@dataclass(frozen=True, slots=True)
class QrUpdated:
    """A (new) QR code to scan; engines rotate codes while unlinked."""

    qr: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The device is linked to an account."""

    phone_number: str
    push_name: str | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection is up and the account usable."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection dropped; the runtime will reconnect."""

    reason: str


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The device was unlinked (from the phone, or WhatsApp ended it): auth is gone."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The engine gave up on this session; `reason` becomes the session's `lastError`."""

    reason: str


@dataclass(frozen=True, slots=True)
class MessageAck:
    """WhatsApp acknowledged one of our messages: `sent`, `delivered`, `read` or `played`;
    or `failed` when its server refused a message it had taken (a server-error receipt).
    `by` is who read it, in groups."""

    message_id: str
    chat_id: str
    status: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class ReadBySelf:
    """The account read these inbound messages elsewhere (its phone): ours are read too."""

    chat_id: str
    message_ids: list[str]


@dataclass(frozen=True, slots=True)
class InboundMedia:
    """Media that came with a message. Exactly one of `data` (bytes an engine downloaded),
    `path` (a file an engine downloaded to, handed over: storing the report moves it
    into our storage, and an ignored report deletes it) or `source_key` (an object
    already in our storage, as the mock network passes it)."""

    mimetype: str
    size: int
    filename: str | None = None
    data: bytes | None = None
    source_key: str | None = None
    path: Path | None = None


# The type of a message WhatsApp could not decrypt for us (yet): a placeholder that the
# message itself replaces when a retry brings it under the same id.
UNDECRYPTABLE = "undecryptable"


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message arrived (or, with `from_me`, was sent from the phone itself)."""

    id: str
    chat_id: str
    sender: str | None
    type: str
    content: dict[str, Any]
    timestamp: datetime
    from_me: bool = False
    media: InboundMedia | None = None
    push_name: str | None = None
    # From the history an engine syncs after linking: stored, but no webhook for it.
    history: bool = False
    # A history message still unread on the phone (stored unread; other history is read).
    unread: bool = False
    # The WhatsApp LIDs behind `sender` / `chat_id` when the engine mapped them to phone
    # numbers (`fromLid` / `chatLid`); when it could not, `sender`/`chat_id` are the LIDs.
    sender_lid: str | None = None
    chat_lid: str | None = None
    # For `type == "unknown"`: the engine's own name of what it could not translate.
    raw_type: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRevoked:
    id: str
    chat_id: str
    by: str | None = None
    history: bool = False


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """The sender changed a message's text (`id` names the edited message)."""

    id: str
    chat_id: str
    sender: str | None
    text: str
    edited_at: datetime
    from_me: bool = False
    history: bool = False


@dataclass(frozen=True, slots=True)
class PollVoted:
    """A (decrypted) vote on poll `poll_id`: the option names now selected (none: retracted).

    An engine that cannot name the options (whatsmeow once its worker restarted: votes
    name options by hash, and the poll was seen before) gives `option_hashes` instead,
    the hex SHA-256 of each chosen name; the core names them from the stored poll."""

    poll_id: str
    chat_id: str
    sender: str | None
    selected: list[str]
    option_hashes: list[str] | None = None


@dataclass(frozen=True, slots=True)
class PresenceUpdated:
    """`presence`: available, unavailable, composing, recording or paused."""

    chat_id: str
    sender: str | None
    presence: str
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallReceived:
    call_id: str
    sender: str
    is_video: bool
    is_group: bool
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ChatUpdated:
    """A chat's settings changed; only the fields given changed."""

    chat_id: str
    ephemeral_seconds: int | None = None
    archived: bool | None = None
    pinned: bool | None = None
    muted: bool | None = None


@dataclass(frozen=True, slots=True)
class ContactUpdated:
    """A contact's new push name, or the LID WhatsApp uses for this phone number
    (`contact_id` is the phone-number address): earlier `@lid` chats merge into it."""

    contact_id: str
    push_name: str | None = None
    lid: str | None = None


@dataclass(frozen=True, slots=True)
class ReactionReceived:
    """A reaction to `message_id`; an empty `emoji` removes it."""

    message_id: str
    chat_id: str
    sender: str | None
    emoji: str


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    """`action`: created, subject, description, settings, ephemeral, invite_link, join,
    leave, add, remove, promote, demote, approval, delete, link, unlink; `value` is the
    new subject, description, timer seconds, invite link, ... where the action has one."""

    group_id: str
    action: str
    participants: list[str] = field(default_factory=list)
    by: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class ContactsSeen:
    """Names an engine learned (address book, push names, group subjects): chat id ->
    name. Those of users are kept as the contacts' push names, so chats and contacts
    show them; group subjects have no place of their own yet and are not kept."""

    names: dict[str, str]


EngineEvent = (
    QrUpdated
    | Authenticated
    | Connected
    | Disconnected
    | LoggedOut
    | Failed
    | MessageAck
    | MessageReceived
    | MessageRevoked
    | MessageEdited
    | ReactionReceived
    | PollVoted
    | ReadBySelf
    | PresenceUpdated
    | CallReceived
    | GroupUpdated
    | ChatUpdated
    | ContactUpdated
    | ContactsSeen
)
EventSink = Callable[[EngineEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send. `id` is ours, made at acceptance and kept on every retry, so a
    resend after a crash is the same message to WhatsApp (recipients drop duplicates).

    `content` is typed (`openwa.engines.content`): engines match on its class."""

    id: str
    chat_id: str
    content: Content

    @property
    def type(self) -> str:
        """The message's type as the API names it (`text`, `image`, `reaction`, ...)."""
        return self.content.kind


@dataclass(frozen=True, slots=True)
class GroupInfo:
    id: str
    subject: str
    description: str | None
    owner: str | None
    participants: list[dict[str, str]]  # [{"id": chat id, "role": member|admin|superadmin}]
    settings: dict[str, bool]
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ParticipantResult:
    id: str
    status: str  # "ok", or why not: "not_found", "not_member", "already_member"


# The error codes a failed message can carry (the contract's Messages section).
ENGINE_ERROR = "ENGINE_ERROR"
# The engine cannot tell whether the message went out (its worker died mid-send, or the
# send ran past its deadline) and cannot resend under the same id: never retried.
SEND_OUTCOME_UNKNOWN = "SEND_OUTCOME_UNKNOWN"
# WhatsApp's server refused a message it had taken (an engine's `failed` receipt).
SERVER_REFUSED = "SERVER_REFUSED"


class SendFailed(Exception):
    """The engine could not send; `retryable` says whether trying again may help, `code`
    is the error code the message fails with when it is not retried."""

    def __init__(self, reason: str, *, retryable: bool = True, code: str = ENGINE_ERROR) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.code = code


class EngineRefused(Exception):
    """The engine (WhatsApp) said no: not an admin, unknown group, ... (ENGINE_ERROR)."""


class MediaReader(Protocol):
    """Read access to our media storage, for engines that upload what they send."""

    def stream(self, key: str) -> Any: ...


class AuthNotOurs(Exception):
    """A write of the session's auth state refused because this instance no longer owns
    the session under the epoch its client was started with (another instance took it
    over, or a newer client runs it here): trying again cannot help. The ownership loop
    drops a session it lost; an engine stops writing."""


class AuthStore(Protocol):
    """One session's auth state, kept by OpenWA (in its database). `save` and `clear`
    raise `AuthNotOurs` once the session belongs to another instance."""

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, data: dict[str, Any]) -> None: ...

    async def clear(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What an engine gets to run one session."""

    session_id: str
    auth: AuthStore
    emit: EventSink
    config: dict[str, Any] = field(default_factory=dict)
    media: MediaReader | None = None
    # The instance running the session and its lease epoch (a fencing token): an engine
    # that records or stamps what it does can say who did it, under which ownership.
    instance: str = ""
    epoch: int = 0
    # Closed while the core is behind with this session's reports: hold back what you
    # can (see `engines.flow`); `emit` itself never waits.
    flow: ReportFlow = field(default_factory=ReportFlow)


# One message's outcome in a batched send: the engine's id (or None), or why it failed.
SendResult = str | None | BaseException


@runtime_checkable
class ResendsSafely(Protocol):
    """A client whose sends carry our message id (the mock, Baileys): a send cut short by a
    crash can go again, since recipients drop the duplicate. Sends of any other client
    (whatsmeow, whatsapp-web.js) that may have gone out are never repeated by themselves:
    they fail with `SEND_OUTCOME_UNKNOWN`."""

    resends_safely: bool


@runtime_checkable
class BatchSender(Protocol):
    """A client that can hand a run of messages to WhatsApp at once (the mock engine).

    `send_many` sends in order and stops at the first failure: the results are those
    of the messages that went, then that failure; the rest were not attempted.
    """

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]: ...


class EngineClient(Protocol):
    """One session's connection to WhatsApp."""

    async def connect(self) -> None:
        """Start connecting and return; progress arrives as events."""
        ...

    async def disconnect(self) -> None:
        """Close the connection and keep the auth state."""
        ...

    async def logout(self) -> None:
        """Unlink the device and clear the auth state."""
        ...

    async def request_pairing_code(self, phone_number: str) -> str:
        """Link by phone number instead of QR: the code to type on the phone."""
        ...

    async def send(self, message: OutgoingMessage) -> str | None:
        """Hand the message to WhatsApp; raise `SendFailed` when that did not happen.

        Returns the id WhatsApp knows the message by when the engine could not use ours
        (acks, reactions and revokes then name that id), else None.

        Media is a `MediaFile` (`content.media`) readable through the context's
        `MediaReader`. A reaction's `message_id` and a reply's `reply_to.id` already
        name the target by the engine's id, and a reaction says whose its target is
        (`target`).
        """
        ...

    async def stored(self, message_ids: list[str]) -> None:
        """Incoming messages are durably stored on our side.

        Engines that can, acknowledge only now, so that a crash between receiving and
        storing makes WhatsApp (or the mock) hand the message over again.
        """
        ...

    async def revoke(self, chat_id: str, message_id: str) -> None: ...

    async def mark_read(
        self, chat_id: str, message_ids: list[str], senders: dict[str, str] | None = None
    ) -> None:
        """Read receipts; `senders` (message id -> sender) matters in groups, where a
        receipt names the participant who wrote the message."""
        ...

    async def set_presence(self, chat_id: str, state: str) -> None:
        """`typing`, `recording` or `paused` in a chat."""
        ...

    async def check_number(self, phone: str) -> str | None:
        """The user address of `phone` when it is on WhatsApp, else None."""
        ...

    async def subscribe_presence(self, chat_id: str) -> None:
        """Ask WhatsApp for this contact's presence (online, offline with last seen):
        `PresenceUpdated` reports follow while the connection lasts."""
        ...

    async def profile_picture(self, chat_id: str) -> str | None: ...

    async def groups(self) -> list[GroupInfo]: ...

    async def group_info(self, group_id: str) -> GroupInfo: ...

    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo: ...

    async def update_group(
        self,
        group_id: str,
        subject: str | None,
        description: str | None,
        settings: dict[str, bool] | None,
    ) -> GroupInfo: ...

    async def change_participants(
        self, group_id: str, action: str, participants: list[str]
    ) -> list[ParticipantResult]: ...

    async def invite_code(self, group_id: str) -> str: ...

    async def leave_group(self, group_id: str) -> None: ...


class Engine(Protocol):
    name: str
    capabilities: frozenset[str]
    # Running sessions of this engine an instance may hold (whatsapp-web.js: a browser
    # each); None: only MAX_SESSIONS bounds them.
    max_sessions: int | None

    async def unavailable(self) -> str | None:
        """Why this instance cannot run the engine's sessions (`GET /api/engines`)."""
        ...

    def client(self, context: SessionContext) -> EngineClient: ...

    async def check(self) -> None:
        """Raise when the engine cannot start sessions (for `/health/ready`)."""
        ...

    async def forget(self, session_id: str, auth: dict[str, Any] | None) -> None:
        """Drop what the engine keeps on its own for a session it no longer links
        (logout, delete); `auth` is the session's last saved `AuthStore` state."""
        ...

    async def close(self) -> None: ...


# What every WhatsApp engine offers (the contract's messaging, linking and account
# capabilities); an engine adds its own extras to these.
WHATSAPP_CAPABILITIES = frozenset(
    {
        "qr",
        "pairing_code",
        "send_text",
        "send_media",
        "send_location",
        "send_contact",
        "reaction",
        "revoke",
        "chats",
        "contacts",
        "groups",
        "presence",
        # following a contact's presence (`POST .../contacts/{id}/presence`)
        "presence_subscribe",
    }
)


class PairingNotAvailable(Exception):
    """Raised by `request_pairing_code` when the session is not waiting to be linked."""
