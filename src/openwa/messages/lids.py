"""WhatsApp LIDs: the ids WhatsApp hides phone numbers behind, mapped back to them.

A contact learns its LID (`contacts.lid`) when the engine maps one to a phone number:
a `ContactUpdated` report, or a message that came with both. From then on a report that
still names the LID is stored under the phone-number id, the LID kept alongside
(`chat_lid` / `sender_lid`), and what was stored under the LID before moves to the phone
number: one chat per person, as clients expect.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import ContactRow, MessageRow
from openwa.db.models.message import LID_SENDER
from openwa.db.sqlite_driver import off_the_loop
from openwa.engines.base import (
    CallReceived,
    ChatUpdated,
    EngineEvent,
    GroupUpdated,
    MessageAck,
    MessageEdited,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReactionReceived,
    ReadBySelf,
)
from openwa.kit.chat_ids import USER_SUFFIX, is_lid
from openwa.kit.clock import utcnow

# Bound parameters per statement stay far below SQLite's and asyncpg's limits.
_CHUNK = 500


def lid_pair(phone_id: str | None, lid: str | None) -> tuple[str, str] | None:
    """`(phone-number id, LID)` when the two name one person as a mapping can keep them."""
    if phone_id is None or lid is None or not is_lid(lid) or not phone_id.endswith(USER_SUFFIX):
        return None
    return phone_id, lid


async def phone_ids(db: AsyncSession, session_id: str, lids: Collection[str]) -> dict[str, str]:
    """The phone-number ids the session knows these LIDs by: LID -> phone-number id."""
    wanted = sorted(lids)
    mapped: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = await db.execute(
            select(ContactRow.lid, ContactRow.chat_id).where(
                ContactRow.session_id == session_id,
                ContactRow.lid.in_(wanted[start : start + _CHUNK]),
            )
        )
        mapped.update({lid: chat_id for lid, chat_id in rows if lid is not None})
    return mapped


async def move_left_behind(db: AsyncSession, session_id: str, lids: Collection[str]) -> None:
    """Move the session's messages still in the chats of these LIDs to the numbers the
    LIDs map to now (those not mapped stay).

    A send to a LID not mapped yet and the merge of that LID (`map_lid`) may each miss
    the other on PostgreSQL (READ COMMITTED): the send saw no mapping, the merge no
    message to move, as neither had committed. Each runs this in a transaction after its
    own commit (the send for its LID, a run of reports for the LIDs it learned), so the
    one that commits second sees the other's row, and the message joins its chat. No
    lock is held across the two (one that was held every accept of the instance behind
    a merge, and deadlocked a merge of two LIDs against a group of sends to them).
    """
    wanted = sorted(lids)
    now = utcnow()
    mapped = select(ContactRow.chat_id).where(
        ContactRow.session_id == MessageRow.session_id, ContactRow.lid == MessageRow.chat_id
    )
    for start in range(0, len(wanted), _CHUNK):
        await db.execute(
            update(MessageRow)
            .where(
                MessageRow.session_id == session_id,
                MessageRow.chat_id.in_(wanted[start : start + _CHUNK]),
                mapped.exists(),
            )
            # Both read the row as it was: the LID goes beside the number.
            .values(chat_id=mapped.scalar_subquery(), chat_lid=MessageRow.chat_id, updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def map_lid(db: AsyncSession, session_id: str, phone_id: str, lid: str) -> None:
    """Record that `lid` is `phone_id`, and move what was stored under the LID there.

    In the caller's unit of work, so the move is all or nothing. Chats are the messages'
    `chat_id`s, so a chat kept under both ids becomes one, its messages in their order
    (their timestamps do not change); a message is one row, so none is lost or doubled.
    """
    now = utcnow()
    # A LID names one account: another number that had it (a changed number) lets go.
    await db.execute(
        update(ContactRow)
        .where(
            ContactRow.session_id == session_id,
            ContactRow.lid == lid,
            ContactRow.chat_id != phone_id,
        )
        .values(lid=None, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    by_lid = await db.get(ContactRow, (session_id, lid))
    contact = await db.get(ContactRow, (session_id, phone_id))
    if contact is None:
        contact = ContactRow(session_id=session_id, chat_id=phone_id, updated_at=now)
        db.add(contact)
    contact.lid, contact.updated_at = lid, now
    if by_lid is not None:
        # The names learned under the LID stay with the person.
        contact.name = contact.name or by_lid.name
        contact.push_name = contact.push_name or by_lid.push_name
        await db.delete(by_lid)
    with off_the_loop():  # a chat's every message may move: off SQLite's event loop
        await db.execute(
            update(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.chat_id == lid)
            .values(chat_id=phone_id, chat_lid=lid, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
        await db.execute(
            update(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.sender == lid, LID_SENDER)
            .values(sender=phone_id, sender_lid=lid, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )


# The fields of each report that name a person (or a chat) and may hold a LID; an
# inbound message and a contact's update keep the LID beside the number, so they are
# addressed where they are applied, not here.
_ADDRESSES: dict[type[Any], tuple[str, ...]] = {
    MessageAck: ("chat_id", "by"),
    ReadBySelf: ("chat_id",),
    MessageRevoked: ("chat_id", "by"),
    MessageEdited: ("chat_id", "sender"),
    PollVoted: ("chat_id", "sender"),
    ReactionReceived: ("chat_id", "sender"),
    PresenceUpdated: ("chat_id", "sender"),
    CallReceived: ("sender",),
    ChatUpdated: ("chat_id",),
    GroupUpdated: ("by", "participants"),
}


def addresses_of(report: EngineEvent) -> Iterator[str | None]:
    """The people and chats a report names in its address fields."""
    for name in _ADDRESSES.get(type(report), ()):
        value = getattr(report, name)
        if isinstance(value, list):
            yield from value
        else:
            yield value


def lids_named(addresses: Iterable[str | None]) -> set[str]:
    return {address for address in addresses if address is not None and is_lid(address)}


@dataclass
class RunLids:
    """The LID mappings one run of reports knows: read in one query at its start (none
    when no report names a LID), and grown as the run learns new ones."""

    session_id: str
    known: dict[str, str] = field(default_factory=dict)  # LID -> phone-number id
    learned: list[str] = field(default_factory=list)  # LIDs this run mapped anew

    @classmethod
    async def load(
        cls,
        db: AsyncSession,
        session_id: str,
        lids: Collection[str],
        learned: list[str],
    ) -> RunLids:
        """`learned`: where the LIDs it maps anew are noted."""
        known = await phone_ids(db, session_id, lids) if lids else {}
        return cls(session_id, known, learned)

    async def learn(self, db: AsyncSession, phone_id: str, lid: str) -> bool:
        """Map `lid` to `phone_id` (moving what was stored under the LID) unless the
        session knew it already; whether it was new."""
        if self.known.get(lid) == phone_id:
            return False
        await map_lid(db, self.session_id, phone_id, lid)
        self.known[lid] = phone_id
        self.learned.append(lid)
        return True

    def address(self, address: str, lid: str | None) -> tuple[str, str | None]:
        """`(address, its LID)`: the phone-number id for a mapped LID, kept alongside."""
        if address in self.known:
            return self.known[address], address
        return address, lid

    def by_phone_number(self, report: EngineEvent) -> EngineEvent:
        """The report with every mapped LID in its address fields replaced by the phone
        number (reactions, votes, edits, revokes, receipts' readers, presence, calls,
        group changes): clients see one id per person whatever WhatsApp addressed."""
        if not self.known:  # most runs (a burst of acks) name no mapped LID
            return report
        changes: dict[str, Any] = {}
        for name in _ADDRESSES.get(type(report), ()):
            value = getattr(report, name)
            if isinstance(value, list):
                mapped: Any = [self.known.get(item, item) for item in value]
            else:
                mapped = self.known.get(value, value) if value is not None else None
            if mapped != value:
                changes[name] = mapped
        return replace(report, **changes) if changes else report

    def mentions(self, content: dict[str, Any]) -> dict[str, Any]:
        """Message content whose mentions name mapped LIDs by their phone numbers."""
        named = content.get("mentions")
        if not isinstance(named, list) or not any(item in self.known for item in named):
            return content
        return {**content, "mentions": [self.known.get(item, item) for item in named]}
