"""The engine ids of recent sends, known from the moment an engine hands them back.

An engine that cannot send under our id (whatsmeow, the mock with `MOCK_ENGINE_IDS=own`)
names the message by its own id in acks, reactions and revokes. The send worker records
that id (`engineId`) in the run's transaction, after the engine returned; an ack can
overtake that record, and looked up in the database alone it would find nothing and be
lost. So the worker tells this map each id as soon as the engine returns it, reports
name our ids through it, and an ack that comes even before the engine returned (a
worker process answers later than its events arrive) is held here until the id is
known, then applied.

In memory and bounded: it covers the seconds around a send. Later reports find the
message by `engineId` in the database.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import replace

from openwa.engines.base import MessageAck

_KNOWN = 16_384
_HELD = 4_096
# Acks held per id: a send's own early acks are a few (one per recipient device within
# the moment before its id is known). A message sent from the phone into a big group is
# never learned, and its acks (one per member and status) would pile up under its id.
_HELD_PER_ID = 32


class EngineIds:
    def __init__(self, known: int = _KNOWN, held: int = _HELD, per_id: int = _HELD_PER_ID) -> None:
        self._ours: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._held: OrderedDict[tuple[str, str], deque[MessageAck]] = OrderedDict()
        self._known_max = known
        self._held_max = held
        self._per_id = per_id

    def ours(self, session_id: str, message_id: str) -> str:
        """Our id for `message_id` when it is the engine's id of a recent send of ours,
        else `message_id` as it is."""
        return self._ours.get((session_id, message_id), message_id)

    def learn(self, session_id: str, pairs: Iterable[tuple[str, str]]) -> list[MessageAck]:
        """Note the engine ids of sends just made (`(engine id, our id)`); the acks held
        for them, named by our ids, in the order they came."""
        released: list[MessageAck] = []
        for engine_id, our_id in pairs:
            key = (session_id, engine_id)
            self._ours[key] = our_id
            self._ours.move_to_end(key)
            for ack in self._held.pop(key, []):
                released.append(replace(ack, message_id=our_id))
        while len(self._ours) > self._known_max:
            self._ours.popitem(last=False)
        return released

    def hold(self, session_id: str, ack: MessageAck) -> bool:
        """Keep an ack that named no stored message until its engine id is learned;
        False (nothing held) when the id is known by now: look it up again."""
        key = (session_id, ack.message_id)
        if key in self._ours:
            return False
        # The newest kept: later acks carry the further statuses.
        self._held.setdefault(key, deque(maxlen=self._per_id)).append(ack)
        # Oldest first held, first forgotten: acks for messages that are not ours (sent
        # from the phone) end up here too, and keep coming for a while.
        while len(self._held) > self._held_max:
            self._held.popitem(last=False)
        return True
