"""What each instance keeps in memory, kept true when other instances change it.

The session directory, the open streams of a revoked key, and the loops that wait for
new events or queued sends all live per process. Each change committed here is noted
on the broadcast (Redis); the others re-read what it names from the database. The
directory is also re-read every `poll_s`, so a lost note costs a second, not a stale
answer forever; the event pump and the send worker poll on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster.broadcast import Broadcast
from openwa.events.log import EventLog
from openwa.events.streams import StreamRegistry
from openwa.keys.principal import Principal
from openwa.keys.service import KeyService
from openwa.kit.background import BackgroundTask
from openwa.kit.signal import Signal
from openwa.sessions.directory import SessionDirectory

log = structlog.get_logger(__name__)

SESSION, KEY, EVENTS, SENDS = "session", "key", "events", "sends"


class ClusterSync:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        broadcast: Broadcast,
        *,
        directory: SessionDirectory,
        keys: KeyService,
        streams: StreamRegistry,
        events: EventLog,
        queued: Signal,
        leases_changed: Callable[[], Awaitable[None]] | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self._db = db
        self._broadcast = broadcast
        self._directory = directory
        self._keys = keys
        self._streams = streams
        # A session row changes when it starts or moves, after its lease was taken:
        # reading the leases then lets live calls go to the new owner at once.
        self._leases_changed = leases_changed
        self._poll_s = poll_s
        self._changed: set[str] = set()
        self._wake = Signal()
        self._loop = BackgroundTask("cluster-sync", self._run)
        self._revoking: set[asyncio.Task[None]] = set()

        directory.on_change = lambda session_id: broadcast.publish(SESSION, session_id)
        broadcast.on(SESSION, self._session_changed)
        keys.add_revocation_listener(self._key_revoked_here)
        broadcast.on(KEY, self._key_revoked_elsewhere)
        events.appended.echo(lambda: broadcast.publish(EVENTS))
        broadcast.on(EVENTS, lambda _: events.appended.notify(echo=False))
        queued.echo(lambda: broadcast.publish(SENDS))
        broadcast.on(SENDS, lambda _: queued.notify(echo=False))

    async def start(self) -> None:
        await self._broadcast.start()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self._broadcast.close()

    def _session_changed(self, session_id: str) -> None:
        self._changed.add(session_id)
        self._wake.notify()

    def _key_revoked_here(self, key_id: str, _successor: Principal | None) -> None:
        self._broadcast.publish(KEY, key_id)

    def _key_revoked_elsewhere(self, key_id: str) -> None:
        task = asyncio.create_task(self._revoke(key_id))
        self._revoking.add(task)
        task.add_done_callback(self._revoking.discard)

    async def _revoke(self, key_id: str) -> None:
        try:
            self._streams.revoke(key_id, await self._keys.current(key_id))
        except Exception:
            log.exception("remote_revocation_failed", key_id=key_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        polled = loop.time()
        while True:
            await self._wake.wait(self._poll_s)
            try:
                if loop.time() - polled >= self._poll_s:
                    polled = loop.time()
                    self._changed.clear()
                    await self._directory.refresh(self._db)
                elif self._changed:
                    changed, self._changed = self._changed, set()
                    await self._directory.refresh(self._db, changed)
                    if self._leases_changed is not None:
                        await self._leases_changed()
            except Exception:
                log.exception("cluster_sync_failed")
