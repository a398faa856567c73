"""What one worker session remembers between events, bounded: the phone ids behind the
LIDs it has seen (and which pairs it already reported), the option names of polls (votes
name options only by hash), and the push names last seen (a change is a contact update).

Kept in the worker's memory only: after a worker restart, a pair is reported once more
and a vote on a poll from before the restart goes to the core by option hashes (it names
them from the poll it stored).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from openwa.engines.base import ContactUpdated

_LIDS = 20_000
_POLLS = 5_000
_NAMES = 20_000

K = TypeVar("K")
V = TypeVar("V")


def _put(store: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


class SessionMemory:
    def __init__(self) -> None:
        self.phones: OrderedDict[str, str] = OrderedDict()  # LID -> phone id
        self.polls: OrderedDict[str, dict[bytes, str]] = OrderedDict()
        self.names: OrderedDict[str, str] = OrderedDict()
        # The account's own phone id: its LID is remembered, never reported as a contact.
        self.own: str | None = None

    def learn(
        self, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]
    ) -> list[ContactUpdated]:
        """Remember (phone id, LID) pairs; a `ContactUpdated` for each one not known yet."""
        updates: list[ContactUpdated] = []
        for phone, lid in pairs:
            if self.phones.get(lid) != phone and phone != self.own:
                updates.append(ContactUpdated(phone, lid=lid))
            _put(self.phones, lid, phone, _LIDS)
        return updates

    def phone_of(self, chat_id: str | None) -> str | None:
        """The phone id behind a LID when known, else the id as given."""
        if chat_id is None:
            return None
        return self.phones.get(chat_id, chat_id)

    def remember_poll(self, poll_id: str, options: dict[bytes, str]) -> None:
        _put(self.polls, poll_id, options, _POLLS)

    def renamed(self, contact_id: str, push_name: str) -> ContactUpdated | None:
        """A `ContactUpdated` when a contact's push name differs from the one seen last
        (a first sighting is not a change: the message itself carries the name)."""
        before = self.names.get(contact_id)
        _put(self.names, contact_id, push_name, _NAMES)
        if before is None or before == push_name:
            return None
        return ContactUpdated(contact_id, push_name=push_name)
