"""Applying engine reports: acks, inbound messages, revokes, edits, reactions, poll votes,
reads from the account's phone, contacts (and the LIDs WhatsApp addresses people by,
mapped to their phone numbers), and what is only announced (presence, calls, chat and
group changes).

Reports arrive from each session's runtime in order, in runs. A run is one unit of
work, group-committed with other sessions' runs; whatever can be made before the
transaction (rows, event payloads, media in storage) is, so the writer is held only
for the writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.engine import conflict_detail, lost_to_a_conflict, transient
from openwa.db.group_commit import GroupCommit
from openwa.db.models import MessageRow, SessionRow, SetAsideReportRow
from openwa.engines.base import (
    SERVER_REFUSED,
    UNDECRYPTABLE,
    CallReceived,
    ChatUpdated,
    ContactsSeen,
    ContactUpdated,
    EngineEvent,
    GroupUpdated,
    InboundMedia,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.engines.flow import Patience, ReportsPutOff, Retries
from openwa.events.log import EventLog
from openwa.events.types import (
    CONTACT_UPDATE,
    MESSAGE_ACK,
    MESSAGE_EDITED,
    MESSAGE_POLL_VOTE,
    MESSAGE_REACTION,
    MESSAGE_RECEIVED,
    MESSAGE_REVOKED,
    MESSAGE_SENT,
    MESSAGE_UNKNOWN,
    Event,
)
from openwa.kit.chat_ids import chat_kind
from openwa.kit.clock import utcnow
from openwa.kit.fields import present
from openwa.media.links import MediaLinks
from openwa.media.sweep import referenced_keys
from openwa.media.types import extension_for
from openwa.messages.edits import apply_edit, edited_data, edited_field
from openwa.messages.engine_ids import EngineIds
from openwa.messages.lids import (
    RunLids,
    addresses_of,
    lid_pair,
    lids_named,
    move_left_behind,
)
from openwa.messages.notices import announcement
from openwa.messages.pending_edits import PendingEdits
from openwa.messages.polls import option_names
from openwa.messages.repository import MessageRepository, upsert_contact
from openwa.messages.status import MessageStatus, parse, path, refused
from openwa.messages.wire import ack_data, event_data
from openwa.sessions.records import session_event
from openwa.storage.base import Storage
from openwa.storage.keys import inbound_media_key

log = structlog.get_logger(__name__)

_IGNORE_FLAGS = {"group": "groups", "status": "status", "channel": "channels"}


@dataclass
class _Run:
    """What one run of reports has seen so far: stored message ids, the messages it
    acks (locked), contacts to note, the LIDs it can map to phone numbers, the media
    keys of the messages it writes."""

    known: dict[str, str]  # stored message id -> its type
    lids: RunLids
    locked: dict[str, MessageRow] = field(default_factory=dict)
    inbound: dict[int, _Inbound | None] = field(default_factory=dict)  # by `id(report)`
    contacts: dict[str, str | None] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)

    def contact(self, chat_id: str, push_name: str | None) -> None:
        # Noted once per run, at its end; a later known name wins over none.
        if push_name or chat_id not in self.contacts:
            self.contacts[chat_id] = push_name

    async def learn_lid(self, db: AsyncSession, phone_id: str, lid: str) -> bool:
        """Map `lid` to `phone_id` (`RunLids.learn`); a contact noted under the LID is
        noted under the number instead."""
        if not await self.lids.learn(db, phone_id, lid):
            return False
        if lid in self.contacts:
            self.contact(phone_id, self.contacts.pop(lid))
        return True


@dataclass(frozen=True)
class _Inbound:
    """An inbound message made ready outside the transaction: its row (a run retried
    report by report adds it again: the rollback left it transient) and its event."""

    row: MessageRow
    event: Event | None


@dataclass
class _Prepared:
    """What a call made ready before its runs: each inbound report's message, by the
    report (`id(report)`: one id may come twice in a call, and each is its own), and the
    keys of the media it stored, of which `kept` are those that committed rows refer to."""

    inbound: dict[int, _Inbound | None] = field(default_factory=dict)
    stored: list[str] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)

    def unreferenced(self) -> list[str]:
        return [key for key in self.stored if key not in self.kept]


def _lids_named(reports: list[EngineEvent]) -> set[str]:
    """The LIDs a run's reports name, to look their mappings up at once."""
    named: set[str | None] = set()
    for report in reports:
        match report:
            case MessageReceived():
                named |= {report.chat_id, report.sender, report.chat_lid, report.sender_lid}
                mentions = report.content.get("mentions")
                if isinstance(mentions, list):
                    named |= {item for item in mentions if isinstance(item, str)}
            case ContactUpdated():
                named |= {report.contact_id, report.lid}
            case ContactsSeen():
                named |= set(report.names)
            case _:
                named |= set(addresses_of(report))
    return lids_named(named)


def _received_ids(reports: list[EngineEvent]) -> set[str]:
    return {report.id for report in reports if isinstance(report, MessageReceived)}


# A run that failed for a reason of the moment is tried again (`engines.flow.Retries`:
# from 0.1 s, doubling up to 1.6 s; on SQLite each try may first wait out the busy
# timeout): a busy spell of SQLite, a deadlock lost, a connection dropped by a restart
# of the database. The tries go on for as long as the call's patience
# (`ENGINE_REPORT_RETRY_S`): whatsmeow and whatsapp-web.js acknowledged their reports to WhatsApp already, so a
# database that is away for a minute (a restart, a failover) must not lose what they
# handed over meanwhile. Past it, the run is set aside (logged) rather than this
# session's reports held up without end.
DEFAULT_PATIENCE_S = 300.0


# A delete of media nothing refers to waits this long for the storage (the session's
# reports wait meanwhile); one left undeleted goes with the media sweep.
_DROP_TIMEOUT_S = 10.0


class _Aside(Enum):
    """What became of a report set aside."""

    # Written, for a reason of its own (it would fail again): the engine may let go.
    LET_GO = "let go"
    # Written, for a reason of the moment: the engine should hand it over again.
    KEPT = "kept"
    # Not written (the database refused that too): logged only.
    LOST = "lost"


def _drop_handed_over(reports: list[EngineEvent]) -> None:
    """Remove the media files the engine handed over with inbound messages: stored in
    our storage by now, or not to be (an ignored chat, storage that failed, a report set
    aside or dropped). Not kept twice, nor left behind."""
    for report in reports:
        media = report.media if isinstance(report, MessageReceived) else None
        if media is not None and media.path is not None:
            with contextlib.suppress(OSError):
                media.path.unlink(missing_ok=True)


def report_record(report: EngineEvent) -> dict[str, Any]:
    """A report as JSON for inspection (media bytes left out)."""
    record: dict[str, Any] = orjson.loads(
        orjson.dumps(
            report,
            default=lambda value: None if isinstance(value, bytes) else str(value),
        )
    )
    return record


class ReportApplier:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        events: EventLog,
        storage: Storage,
        links: MediaLinks,
        reports: GroupCommit,
        *,
        ids: EngineIds | None = None,
        patience_s: float = DEFAULT_PATIENCE_S,
        read: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`patience_s`: how long a run the database refuses for a reason of the moment
        is tried again before it is set aside (`ENGINE_REPORT_RETRY_S`); `read`: where
        to read beside the writer (`db` when not given)."""
        self._db = db
        self._read = read if read is not None else db
        self._events = events
        self._storage = storage
        self._links = links
        self._reports = reports
        self._patience_s = patience_s
        # Engine ids of recent sends, shared with the send worker.
        self._ids = ids if ids is not None else EngineIds()
        self._pending_edits = PendingEdits()

    def forget_session(self, session_id: str) -> None:
        """Drop what is kept in memory of the session: when it starts here (what was kept
        from before it ran on another instance is read again when needed) and when it is
        deleted (nothing of it stays)."""
        self._pending_edits.forget(session_id)

    async def close(self) -> None:
        """Commit the runs still queued, then stop the group writer."""
        await self._reports.close()

    async def on_engine_events(self, session: SessionRow, reports: list[EngineEvent]) -> None:
        """`apply_reports`, for callers that need not know what was done (the send
        worker's held acks, tests)."""
        await self.apply_reports(session, reports)

    async def apply_reports(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        *,
        put_off: Callable[[], bool] | None = None,
        patience: Patience | None = None,
    ) -> set[str]:
        """Apply a run of engine reports (acks, messages, revokes, reactions, group
        changes) in order, in one unit of work, group-committed with other sessions'
        runs: a burst of acks costs one commit. Returns the ids of the inbound messages
        it is done with: written (or left out as the session ignores their chat), or
        set aside for a reason of their own. Only those may be confirmed to the engine
        as stored (`EngineClient.stored`); the others it should hand over again.

        A run that fails for a reason of the moment (`db.engine.transient`: a deadlock
        lost, SQLite busy, the connection lost) is tried again after a short pause, for
        as long as the applier's patience (`patience`: the caller's, kept across calls;
        else the call's own). A caller that must not wait that long gives `put_off`,
        asked between tries until something of the call is written: when it says so,
        `ReportsPutOff` is raised, nothing written, and the caller hands the same
        reports over again later (the engine's media files are still there for them).
        A run that fails otherwise, or still fails then in a conflict (a deadlock,
        SQLite busy), is applied again one report at a time; one the database is still
        out of reach for is set aside whole (one by one, each report would wait out the
        same failure); a report that fails alone is set aside
        (`set_aside_reports`) with its error, so it neither sinks the reports around it
        nor disappears. So is an inbound message that cannot be made ready
        (`_prepare_inbound`), before the run: the run goes on without it. Media that
        cannot be stored does not count as such: the message is stored without it,
        with `mediaError`.

        Inbound media is stored under a new key each time it is made ready: what the
        call stored that no message refers to once it is done (a message already
        stored, reported again; one set aside) is deleted then (`_drop_unreferenced`);
        that of a run put off (made ready again when handed over again) is left to the
        media sweep, a day later."""
        prepared = _Prepared()
        try:
            done = await self._apply_reports(session, reports, put_off, patience, prepared)
        except ReportsPutOff:
            # Handed over again: the engine's files are still needed. What was stored
            # from them is left to the media sweep: the database is away (that is why
            # the run was put off), so a read would hold up whoever waits for the
            # session, and a commit whose answer was lost may yet show its rows.
            raise
        except asyncio.CancelledError:
            raise  # handed over again; what it stored is left to the media sweep
        except BaseException:
            _drop_handed_over(reports)
            raise
        _drop_handed_over(reports)
        await self._drop_unreferenced(session.id, prepared.unreferenced())
        return done

    async def _apply_reports(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        put_off: Callable[[], bool] | None,
        patience: Patience | None,
        prepared: _Prepared,
    ) -> set[str]:
        done: set[str] = set()
        ready: list[EngineEvent] = []
        for report in reports:
            if isinstance(report, MessageReceived):
                try:
                    prepared.inbound[id(report)] = await self._prepare_inbound(
                        session, report, prepared.stored
                    )
                except Exception as exc:
                    aside = await self._set_aside(session, report, exc)
                    if aside is not _Aside.LOST:
                        put_off = None  # written: the call is not to be handed over again
                    if aside is _Aside.LET_GO:
                        done.add(report.id)
                    continue
            ready.append(report)
        if not ready:
            return done
        retries = Retries(
            session.id, self._patience_s, put_off, patience, event="engine_reports_retried"
        )
        failed = await self._run(session, ready, prepared, retries)
        if failed is None:
            return done | _received_ids(ready)
        retries.put_off = None  # the reports alone are written one by one
        left: list[tuple[EngineEvent, Exception]] = []
        if len(ready) == 1 or (transient(failed) and not lost_to_a_conflict(failed)):
            # Alone, or the database still out of reach past the patience: one by one,
            # each would only wait out the same failure again (a silent host: each a TCP
            # bound). A conflict (a deadlock, SQLite busy) may spare a report alone.
            left += [(report, failed) for report in ready]
        else:
            for report in ready:
                alone = await self._run(session, [report], prepared, retries)
                if alone is None:
                    done |= _received_ids([report])
                else:
                    left.append((report, alone))
        for report, error in left:
            if await self._set_aside(session, report, error) is _Aside.LET_GO:
                done |= _received_ids([report])
        return done

    async def _run(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        prepared: _Prepared,
        retries: Retries,
    ) -> Exception | None:
        """Apply `reports` in one unit of work, again while it fails for a reason of the
        moment and `retries` allow; None once it committed, else its last error."""
        # The LIDs every try mapped, kept across them: a try whose commit went through
        # though its answer was lost leaves the next one nothing new to learn, and what
        # a send wrote under those LIDs meanwhile would be left behind.
        learned: list[str] = []
        while True:
            try:
                kept = await self._reports.run(
                    partial(self._apply_run, session, reports, prepared.inbound, learned)
                )
            except Exception as exc:
                if not transient(exc) or not await retries.pause(
                    exc, reports=len(reports), **conflict_detail(exc)
                ):
                    return exc
                continue
            prepared.kept |= kept
            if learned:
                await self._move_left_behind(session.id, sorted(set(learned)))
            return None

    async def _move_left_behind(self, session_id: str, learned: list[str]) -> None:
        """After the commit of LIDs learned: what a send wrote under them meanwhile, which
        the merge could not see yet, joins its chat (`lids.move_left_behind`). Once: a
        failure leaves such a message in the LID's chat, not lost, and is logged."""
        try:
            async with self._db() as db, db.begin():
                await move_left_behind(db, session_id, learned)
        except Exception:
            log.warning("lid_move_after_merge_failed", session_id=session_id, exc_info=True)

    async def _drop_unreferenced(self, session_id: str, keys: list[str]) -> None:
        """Delete inbound media a call stored that no message refers to. Only what the
        database says no message refers to: a commit whose answer was lost may have
        written it. A failure leaves them to the media sweep (`media/sweep.py`)."""
        if not keys:
            return
        try:
            async with self._read() as db:
                referenced = await referenced_keys(db, keys)
            for key in keys:
                if key not in referenced:
                    with contextlib.suppress(FileNotFoundError):
                        async with asyncio.timeout(_DROP_TIMEOUT_S):
                            await self._storage.delete(key)
        except Exception as exc:
            log.warning(
                "inbound_media_not_dropped",
                session_id=session_id,
                count=len(keys),
                error=repr(exc)[:500],
            )

    async def _apply_run(
        self,
        session: SessionRow,
        reports: list[EngineEvent],
        inbound: dict[int, _Inbound | None],
        learned: list[str],
        db: AsyncSession,
    ) -> set[str]:
        """The run, in the group's transaction: the media keys of the messages it wrote;
        the LIDs it maps anew are added to `learned`."""
        known = await MessageRepository(db).known_types(
            session.id, [r.id for r in reports if isinstance(r, MessageReceived)]
        )
        # The messages the run acks, locked at once in id order (as the sender locks
        # them), so that the two never wait on each other in a cycle on PostgreSQL.
        acked = sorted(
            {self._ids.ours(session.id, r.message_id) for r in reports if isinstance(r, MessageAck)}
        )
        locked = await MessageRepository(db).lock_many(session.id, acked)
        lids = await RunLids.load(db, session.id, _lids_named(reports), learned)
        run = _Run(known=known, lids=lids, locked=locked, inbound=inbound)
        events: list[Event] = []
        for report in reports:
            events += await self._apply(db, session, report, run)
        for chat_id, push_name in run.contacts.items():
            await upsert_contact(db, session.id, chat_id, push_name=push_name)
        await self._events.append(db, events)
        return run.kept

    async def _set_aside(
        self, session: SessionRow, report: EngineEvent, error: Exception
    ) -> _Aside:
        """Keep the report in `set_aside_reports` with its error. The engine may let go
        of it only if it was written for a reason of its own (it would fail again). One
        set aside for a reason of the moment that outlasted the retries (a presign the
        storage did not answer, a database away) is kept for inspection but not
        confirmed, so an engine that can hand it over again (the mock's inbox) does,
        and it is stored then."""
        log.error(
            "engine_report_set_aside",
            session_id=session.id,
            kind=type(report).__name__,
            error=repr(error)[:500],
        )
        row = SetAsideReportRow(
            session_id=session.id,
            kind=type(report).__name__,
            report=report_record(report),
            error=repr(error)[:2000],
            created_at=utcnow(),
        )
        try:
            async with self._db() as db, db.begin():
                db.add(row)
        except Exception:
            log.exception("engine_report_lost", session_id=session.id)
            return _Aside.LOST
        return _Aside.KEPT if transient(error) else _Aside.LET_GO

    async def _apply(
        self,
        db: AsyncSession,
        session: SessionRow,
        report: EngineEvent,
        run: _Run,
    ) -> list[Event]:
        prepared = run.inbound.get(id(report))  # by the report as it was made ready
        report = run.lids.by_phone_number(report)
        match report:
            case MessageAck():
                return await self._ack(db, session, report, run)
            case MessageReceived():
                return await self._received(db, session, report, prepared, run)
            case MessageRevoked():
                return await self._revoked(db, session, report)
            case MessageEdited():
                return await self._edited(db, session, report)
            case ReadBySelf():
                return await self._read_by_self(db, session, report)
            case ReactionReceived():
                data: dict[str, Any] = {
                    "messageId": await self._our_id(db, session, report.message_id),
                    "chatId": report.chat_id,
                    "from": report.sender,
                    "emoji": report.emoji,
                }
                return self._event(session, MESSAGE_REACTION, data, report.chat_id)
            case PollVoted():
                return await self._poll_vote(db, session, report)
            case PresenceUpdated() | CallReceived() | ChatUpdated() | GroupUpdated():
                told = announcement(report)
                return self._event(session, told.event, told.data, told.chat_id)
            case ContactUpdated():
                return await self._contact_updated(db, session, report, run)
            case ContactsSeen(names=names):
                for chat_id, name in names.items():
                    if chat_kind(chat_id) == "user":
                        run.contact(run.lids.address(chat_id, None)[0], name)
        return []

    async def _our_id(self, db: AsyncSession, session: SessionRow, engine_id: str) -> str:
        """Our id of a message a report names by the engine's id (reactions, votes);
        the engine's id when we have no such message."""
        target = await MessageRepository(db).find(session.id, self._ids.ours(session.id, engine_id))
        return target.id if target is not None else engine_id

    async def _poll_vote(
        self, db: AsyncSession, session: SessionRow, voted: PollVoted
    ) -> list[Event]:
        """A vote, by our id of its poll; options given as hashes are named from the
        stored poll (a vote that cannot be named is logged and not announced: the
        event's `selected` holds names)."""
        poll = await MessageRepository(db).find(
            session.id, self._ids.ours(session.id, voted.poll_id)
        )
        selected = voted.selected
        if voted.option_hashes is not None:
            named = option_names(poll.content if poll is not None else None, voted.option_hashes)
            if named is None:
                log.warning("poll_vote_unnamed", session_id=session.id, poll_id=voted.poll_id)
                return []
            selected = named
        vote = {
            "pollId": poll.id if poll is not None else voted.poll_id,
            "chatId": voted.chat_id,
            "from": voted.sender,
            "selected": selected,
        }
        return self._event(session, MESSAGE_POLL_VOTE, vote, voted.chat_id)

    def _ignored(self, session: SessionRow, chat_id: str) -> bool:
        flag = _IGNORE_FLAGS.get(chat_kind(chat_id))
        return bool(flag and ((session.config or {}).get("ignore") or {}).get(flag))

    def _event(
        self, session: SessionRow, name: str, data: dict[str, Any], chat_id: str
    ) -> list[Event]:
        return [] if self._ignored(session, chat_id) else [session_event(session, name, data)]

    async def _revoked(
        self, db: AsyncSession, session: SessionRow, revoked: MessageRevoked
    ) -> list[Event]:
        if self._ignored(session, revoked.chat_id):
            return []
        row = await MessageRepository(db).find(session.id, self._ids.ours(session.id, revoked.id))
        if row is not None:
            if row.revoked_at is not None:
                return []
            row.revoked_at = row.updated_at = utcnow()
        if revoked.history:
            return []  # synced history is stored, not announced
        data = {"id": row.id if row is not None else revoked.id, "chatId": revoked.chat_id}
        if revoked.by is not None:
            data["by"] = revoked.by
        return [session_event(session, MESSAGE_REVOKED, data)]

    async def _edited(
        self, db: AsyncSession, session: SessionRow, edit: MessageEdited
    ) -> list[Event]:
        """The stored message takes the new text and keeps its history; an edit of a
        message we do not have is still announced (the client may know it) and waits
        for the message, which takes it when it comes."""
        if self._ignored(session, edit.chat_id):
            return []
        row = await MessageRepository(db).find(session.id, self._ids.ours(session.id, edit.id))
        if row is not None:
            if not apply_edit(row, edit):
                return []  # it says that already: the same edit, reported again
            row.updated_at = utcnow()
        else:
            # Before its message (WhatsApp's order is not guaranteed): kept for it.
            await self._pending_edits.keep(db, session.id, edit)
        if edit.history:
            return []
        data = edited_data(row.id if row is not None else edit.id, edit)
        return [session_event(session, MESSAGE_EDITED, data)]

    async def _read_by_self(
        self, db: AsyncSession, session: SessionRow, read: ReadBySelf
    ) -> list[Event]:
        """The account read these inbound messages on its phone: they are read here too,
        each with one `message.ack` (`read`); already read, nothing is recorded again."""
        if self._ignored(session, read.chat_id):
            return []
        ids = sorted({self._ids.ours(session.id, i) for i in read.message_ids})
        rows = await MessageRepository(db).lock_many(session.id, ids)
        now = utcnow()
        events: list[Event] = []
        for message_id in ids:
            row = rows.get(message_id)
            if row is None or row.from_me or row.read_at is not None:
                continue
            row.read_at = row.updated_at = now
            events.append(session_event(session, MESSAGE_ACK, ack_data(row, "read")))
        return events

    async def _ack(
        self, db: AsyncSession, session: SessionRow, ack: MessageAck, run: _Run
    ) -> list[Event]:
        """Record the changes the ack implies, each with its event, under the row lock
        (the send worker records `sent` in a transaction of its own and may come later).

        An ack for a message still `pending` means the engine has taken it: `sent` is
        recorded first, as the sender would record it (`message.sent`, the message as
        sent), and the sender then logs nothing for it.

        An ack naming an engine id the sender has not learned yet is held until it
        does (`EngineIds`), then applied."""
        target = parse(ack.status)
        if target is None:
            return []
        message_id = self._ids.ours(session.id, ack.message_id)
        row = run.locked.get(message_id)
        if row is None:  # named by the engine's id, or not locked with the run
            row = await MessageRepository(db).lock(session.id, message_id)
        if row is None and not self._ids.hold(session.id, ack):
            # The engine's id was learned while we looked: it names ours now.
            message_id = self._ids.ours(session.id, ack.message_id)
            row = await MessageRepository(db).lock(session.id, message_id)
        if row is None:
            return []
        events: list[Event] = []
        now = utcnow()
        current = MessageStatus(row.status)
        failed = target == MessageStatus.FAILED
        # A `failed` receipt: the server refused a message it had taken.
        for step in refused(current) if failed else path(current, target):
            row.status, row.updated_at = step.value, now
            if step == MessageStatus.FAILED:
                row.error_code = SERVER_REFUSED
                row.error = f"{SERVER_REFUSED}: WhatsApp's server refused the message"
            if step == MessageStatus.SENT:
                events.append(
                    session_event(session, MESSAGE_SENT, await event_data(self._links, row))
                )
            else:
                by = ack.by if step == target else None
                events.append(session_event(session, MESSAGE_ACK, ack_data(row, step.value, by=by)))
        return events

    async def _received(
        self,
        db: AsyncSession,
        session: SessionRow,
        received: MessageReceived,
        prepared: _Inbound | None,
        run: _Run,
    ) -> list[Event]:
        if prepared is None:  # an ignored chat
            return []
        stored = run.known.get(received.id)
        if stored is not None and not (stored == UNDECRYPTABLE and received.type != UNDECRYPTABLE):
            return []  # already stored: an engine may report a message twice (or sync it)
        run.known[received.id] = received.type
        events = await self._by_phone_number(db, session, received, prepared, run)
        await self._quote_by_our_id(db, session, prepared)
        if stored is None:
            await self._take_waiting_edit(db, session, received, prepared)
            MessageRepository(db).add(prepared.row)
        else:
            # WhatsApp's retry brought the message a placeholder stood for: the real
            # content replaces it, and is announced now.
            await MessageRepository(db).replace_placeholder(prepared.row)
        if prepared.row.media_key is not None:
            run.kept.add(prepared.row.media_key)
        sender = prepared.row.sender
        if sender and chat_kind(received.chat_id) == "user" and not received.from_me:
            run.contact(sender, received.push_name)
        return events if prepared.event is None else [*events, prepared.event]

    async def _take_waiting_edit(
        self, db: AsyncSession, session: SessionRow, received: MessageReceived, prepared: _Inbound
    ) -> None:
        """An edit that came first is applied now: stored and announced edited."""
        applied = await self._pending_edits.apply(db, session.id, received.id, prepared.row)
        if applied and prepared.event is not None:
            field = edited_field(prepared.row)
            prepared.event.data[field] = (prepared.row.content or {}).get(field)

    async def _by_phone_number(
        self,
        db: AsyncSession,
        session: SessionRow,
        received: MessageReceived,
        prepared: _Inbound,
        run: _Run,
    ) -> list[Event]:
        """Address the message by phone numbers wherever a LID of it is mapped, the LID
        alongside; a mapping the engine gives with it is learned first (`contact.update`:
        what was stored under the LID joins the phone number's chat)."""
        events: list[Event] = []
        pairs = (
            lid_pair(received.sender, received.sender_lid),
            lid_pair(received.chat_id, received.chat_lid),
        )
        for pair in filter(None, pairs):
            if await run.learn_lid(db, *pair):
                data = {"contactId": pair[0], "lid": pair[1]}
                events.append(session_event(session, CONTACT_UPDATE, data))
        row = prepared.row
        row.chat_id, row.chat_lid = run.lids.address(row.chat_id, row.chat_lid)
        if row.sender is not None:
            row.sender, row.sender_lid = run.lids.address(row.sender, row.sender_lid)
        if row.content:
            row.content = run.lids.mentions(row.content)
        if prepared.event is not None:
            shown = {"chatId": row.chat_id, "chatLid": row.chat_lid}
            shown |= {"from": row.sender, "fromLid": row.sender_lid}
            shown["mentions"] = (row.content or {}).get("mentions")
            prepared.event.data.update(present(shown))
        return events

    async def _contact_updated(
        self, db: AsyncSession, session: SessionRow, updated: ContactUpdated, run: _Run
    ) -> list[Event]:
        """A new push name, or the LID of a phone number: the mapping is kept and what
        was stored under the LID moves to the number (one chat per person)."""
        contact_id = run.lids.address(updated.contact_id, None)[0]
        data: dict[str, Any] = {"contactId": contact_id}
        if updated.push_name and chat_kind(contact_id) == "user":
            run.contact(contact_id, updated.push_name)
            data["pushName"] = updated.push_name
        pair = lid_pair(contact_id, updated.lid)
        if pair is not None:
            await run.learn_lid(db, *pair)
            data["lid"] = pair[1]
        return [session_event(session, CONTACT_UPDATE, data)]

    async def _quote_by_our_id(
        self, db: AsyncSession, session: SessionRow, prepared: _Inbound
    ) -> None:
        """A reply to one of our sends names it by the engine's id; clients know it by
        ours (`engineId` is internal), so the stored message and its event say ours."""
        content = prepared.row.content or {}
        quoted = content.get("replyTo")
        if not quoted:
            return
        repo = MessageRepository(db)
        target = await repo.find(session.id, self._ids.ours(session.id, quoted))
        if target is None or target.id == quoted:
            return
        prepared.row.content = {**content, "replyTo": target.id}
        if prepared.event is not None:
            prepared.event.data["replyTo"] = target.id

    async def _prepare_inbound(
        self, session: SessionRow, received: MessageReceived, stored: list[str]
    ) -> _Inbound | None:
        """The row and event of an inbound message, and its media in storage (its key
        added to `stored`), made before the transaction (no I/O or Python work while
        the writer is held); None for a chat the session ignores."""
        if self._ignored(session, received.chat_id):
            return None  # its media file, handed over to us, goes with the call
        content = dict(received.content)
        # What the message's media is, and where it is kept, is ours to say alone.
        content.pop("media", None)
        if received.type == "unknown":
            content["rawType"] = received.raw_type
        if received.media is not None:
            try:
                content["media"] = await self._store_inbound(session.id, received.media, stored)
            except FileNotFoundError:
                # The mock's copy from its sender, whose media went meanwhile (the
                # sender deleted, or past its retention): the message, without it.
                content["mediaError"] = "not available"
            except Exception as exc:
                # Our storage failed (a full disk, a bucket out of reach, beyond what
                # its client retries): the message is kept, its text and caption
                # shown, without the media; one file must not sink the run around it.
                log.error(
                    "inbound_media_not_stored",
                    session_id=session.id,
                    message_id=received.id,
                    error=repr(exc)[:500],
                )
                content["mediaError"] = (
                    f"not stored: our media storage failed ({type(exc).__name__})"
                )
        now = utcnow()
        row = MessageRow(
            session_id=session.id,
            id=received.id,
            chat_id=received.chat_id,
            from_me=received.from_me,
            sender=received.sender,
            sender_lid=received.sender_lid,
            chat_lid=received.chat_lid,
            type=received.type,
            content=content,
            media_key=(content.get("media") or {}).get("key"),
            status=(MessageStatus.SENT if received.from_me else MessageStatus.RECEIVED).value,
            timestamp=received.timestamp,
            # Synced history counts as read, but for what the phone still has unread.
            read_at=now if received.history and not received.unread else None,
            created_at=now,
            updated_at=now,
        )
        if received.history:
            return _Inbound(row, None)  # synced history is stored, not announced
        if received.type == "unknown":
            # Only for those who ask for it by name (`"*"` leaves it out): no content.
            data = {
                "id": row.id,
                "chatId": row.chat_id,
                "from": row.sender,
                "rawType": received.raw_type,
            }
            return _Inbound(row, session_event(session, MESSAGE_UNKNOWN, data))
        name = MESSAGE_SENT if received.from_me else MESSAGE_RECEIVED
        return _Inbound(row, session_event(session, name, await event_data(self._links, row)))

    async def _store_inbound(
        self, session_id: str, media: InboundMedia, stored: list[str]
    ) -> dict[str, Any]:
        """Put inbound media in our storage under a new key of our own (never the
        message's id, which its sender chose: `storage/keys.py`); the content's `media`."""
        key = inbound_media_key(session_id, extension_for(media.mimetype))
        stored.append(key)  # before: a put that failed may have written it
        if media.data is not None:
            await self._storage.put(key, media.data, media.mimetype)
        elif media.path is not None:
            # The engine's file, handed over: removed once the call is done with it
            # (`_drop_handed_over`), not now: a run put off is made ready again.
            await self._storage.put(key, media.path, media.mimetype)
        elif media.source_key is not None:
            await self._storage.copy(media.source_key, key)
        described: dict[str, Any] = {"key": key, "mimetype": media.mimetype, "size": media.size}
        if media.filename:
            described["filename"] = media.filename
        return described
