"""The (key, address) pairs this instance has seen: a bounded, in-memory set.

A known pair costs a dictionary lookup and nothing else. An unknown one is claimed in
the database (its primary key makes the first use one row across instances), and added
here once that commits. Eviction only costs another claim, which finds the pair taken.
"""

from __future__ import annotations

from collections import OrderedDict


class SeenPairs:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, pair: tuple[str, str]) -> bool:
        if pair not in self._pairs:
            return False
        self._pairs.move_to_end(pair)
        return True

    def add(self, pair: tuple[str, str]) -> None:
        self._pairs[pair] = None
        self._pairs.move_to_end(pair)
        while len(self._pairs) > self._capacity:
            self._pairs.popitem(last=False)
