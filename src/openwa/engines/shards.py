"""Which engine process (a whatsmeow worker, a Node.js bridge) runs which session.

Sessions are spread over processes of at most N sessions each (a shard:
`WHATSMEOW_SESSIONS_PER_WORKER`, `BAILEYS_SESSIONS_PER_WORKER`, ...), so a process that
dies takes only its own sessions down: they reconnect to its replacement, the others
never notice. A session stays on its shard for its life (its library client lives
there), unless its process stops taking new connection attempts (see `Shard.sealed`);
then it is restarted alone on another shard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openwa.engines.children import ChildProcess


@dataclass(eq=False)
class Shard:
    """One worker slot: its process (replaced when it dies) and the sessions on it."""

    number: int
    sessions: set[str] = field(default_factory=set)
    process: ChildProcess | None = None
    # Set once its process holds `leak_budget` leaked device stores while some session
    # is connected: recycling would disconnect that session, so instead the process
    # takes no new attempt; a session that needs one moves to another shard. Cleared
    # with the process (it is recycled once nothing on it is connected).
    sealed: bool = False
    # Why the process is being ended, for its sessions' `lastError`.
    exit_reason: str | None = None
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.alive else None


class ShardMap:
    """Sessions to shards: a session keeps its shard; a new one goes to the first shard
    with room that still takes attempts, else to a new shard."""

    def __init__(self, sessions_per_worker: int) -> None:
        self.sessions_per_worker = sessions_per_worker
        self.shards: list[Shard] = []
        self._of: dict[str, Shard] = {}

    def of(self, session_id: str) -> Shard | None:
        return self._of.get(session_id)

    def place(self, session_id: str) -> Shard:
        shard = self._of.get(session_id)
        if shard is not None:
            return shard
        shard = next(
            (s for s in self.shards if not s.sealed and len(s.sessions) < self.sessions_per_worker),
            None,
        )
        if shard is None:
            shard = Shard(len(self.shards))
            self.shards.append(shard)
        shard.sessions.add(session_id)
        self._of[session_id] = shard
        return shard

    def drop(self, session_id: str) -> None:
        shard = self._of.pop(session_id, None)
        if shard is not None:
            shard.sessions.discard(session_id)


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` in MB (Linux' /proc); None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
