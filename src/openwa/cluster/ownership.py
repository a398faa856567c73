"""Which sessions this instance may connect, kept true while it runs.

A session is connected only by the instance holding its lease (`leases.py`). This
service takes leases (when a session starts here, and for sessions nobody runs:
orphans of an instance that died or shut down), renews the ones it holds every third
of the lease, and drops a session the moment its lease is not surely its own any more.

"Surely" is counted on this process's monotonic clock from the moment before each
renewal was sent, minus a margin: a process paused (SIGSTOP, a long GC, a frozen VM)
wakes with its leases already lapsed by that clock, so it sends nothing for them before
the next renewal says whether they are still its own; meanwhile another instance may
have taken them over, under a higher epoch.

A dead instance's sessions need not wait for their leases: each member holds a
PostgreSQL lock of its own id on a connection of its own (`db/instance_lock.py`), which
ends when its process does, so the others see at once that it is gone. A paused
instance still holds that lock: its sessions move only when their leases run out.

On one instance alone (no CLUSTER_SECRET), the exclusive instance lock already says no
one else runs: every lease is this instance's to take, and nothing is scanned.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cluster import leases
from openwa.cluster.leases import Lease, LeaseLost
from openwa.db.instance_lock import AdvisoryLock, InstanceLock, live_member_keys, member_key
from openwa.db.models import InstanceRow
from openwa.errors import OwnedElsewhere, SessionLimitReached, SessionNotFound
from openwa.kit.background import BackgroundTask
from openwa.kit.clock import utcnow

log = structlog.get_logger(__name__)

# Taken off a lease's length when counting how long a renewal holds here: the other
# instances judge expiry by their wall clocks, which may run a little ahead of ours.
CLOCK_MARGIN_S = 1.0
# How often orphans are looked for (renewals go every third of a lease).
SCAN_EVERY_S = 1.0
# After a session failed to start here, it is left to others for this long.
RETRY_AFTER_S = 30.0
# Orphans started at once by one instance.
TAKE_AT_ONCE = 8


class Runtime(Protocol):
    """What ownership needs of the session runtime."""

    @property
    def running_count(self) -> int: ...

    def has_room(self) -> bool: ...

    async def take_over(self, session_id: str, reason: str) -> None:
        """Start a session this instance just may own (under its lock)."""

    async def fence(self, session_id: str) -> None:
        """Drop a session whose lease is lost, writing nothing about it."""


@dataclass
class _Held:
    epoch: int
    valid_until: float  # monotonic


@dataclass
class ClusterView:
    """What one scan saw: every lease, the members, and which owners are dead."""

    leases: dict[str, Lease] = field(default_factory=dict)
    members: list[InstanceRow] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)


class Ownership:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        instance_id: str,
        url: str,
        *,
        lease_s: float,
        max_sessions: int,
        clustered: bool,
        member: AdvisoryLock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.instance_id = instance_id
        self.url = url
        self._lease_s = lease_s
        self._max_sessions = max_sessions
        self.clustered = clustered
        # Clustered: this member's lock, which the others read as "it lives".
        self.member = member
        self._monotonic = monotonic
        self._runtime: Runtime | None = None
        self._held: dict[str, _Held] = {}
        self._view = ClusterView()
        self._failed: dict[str, float] = {}  # session -> monotonic time it may be tried again
        self._started_at = utcnow()
        self._last_renewal = -math.inf
        self._draining = False
        self._loop = BackgroundTask("ownership", self._run)
        # Renewals run on their own: a scan that takes over many sessions (each a
        # start, hundreds of milliseconds) must not hold them up, or the leases held
        # here lapse meanwhile and move in turn.
        self._renewals = BackgroundTask("ownership-renewals", self._keep_loop)
        # Called with a session id when it was taken over here (tests, metrics).
        self.on_take_over: Callable[[str], Awaitable[None]] | None = None
        # Called with the instances newly seen dead: the work they had claimed from the
        # durable queues (sends, webhook deliveries) is given back at once, instead of
        # waiting out claims sized for a live worker (a minute, or far more).
        self.on_dead: Callable[[set[str]], Awaitable[None]] | None = None
        self._seen_dead: set[str] = set()
        # Alone: the database's exclusive lock this instance holds (set by the app), which
        # says whether a lease not as written may be taken again (`_restore`).
        self.alone_lock: InstanceLock | None = None

    def attach(self, runtime: Runtime) -> None:
        self._runtime = runtime

    # What others ask.

    def holds(self, session_id: str) -> bool:
        """Whether this instance may act for the session now (its lease is surely ours)."""
        held = self._held.get(session_id)
        if held is None:
            return False
        # Alone, the exclusive instance lock already keeps everyone else off: a slow
        # database must not stop sessions that nobody else could take over.
        return not self.clustered or held.valid_until > self._monotonic()

    def epoch(self, session_id: str) -> int | None:
        held = self._held.get(session_id)
        return held.epoch if held is not None else None

    @property
    def view(self) -> ClusterView:
        return self._view

    def owner_of(self, session_id: str) -> InstanceRow | None:
        """The live member that owns the session, as of the last scan (None: none or us)."""
        lease = self._view.leases.get(session_id)
        if lease is None or lease.owner == self.instance_id or lease.owner in self._view.dead:
            return None
        if lease.expires_at < utcnow():
            return None
        return next((m for m in self._view.members if m.id == lease.owner), None)

    def room_elsewhere(self, session_id: str | None = None) -> OwnedElsewhere | None:
        """Where a session that finds no room here should go: its owner, else the live
        member with the most room (None: nowhere, the cluster is full)."""
        if session_id is not None and (owner := self.owner_of(session_id)) is not None:
            return OwnedElsewhere(details={"instance": owner.id}, url=owner.url)
        roomy = [
            m
            for m in self._view.members
            if m.id != self.instance_id and not m.draining and m.running < m.max_sessions
        ]
        if not roomy:
            return None
        best = max(roomy, key=lambda m: m.max_sessions - m.running)
        return OwnedElsewhere(details={"instance": best.id}, url=best.url)

    async def confirm(self, db: AsyncSession, session_id: str, epoch: int | None = None) -> None:
        """Fence a write in the caller's transaction by the lease's epoch (clustered):
        `LeaseLost` unless this instance still holds it, and no takeover can commit
        before this transaction does. Alone, the instance lock already says so.

        `epoch`: the one a client was started with, rather than the one held now: a
        client left over from an earlier start of the session here must not write as
        the newer one, nor after the session stopped (a lease given back keeps its owner
        and epoch in the database until another takes it)."""
        if not self.clustered:
            return
        held = self._held.get(session_id)
        if held is None or epoch not in (None, held.epoch):
            raise LeaseLost(session_id)
        await leases.confirm(db, session_id, self.instance_id, held.epoch)

    # Taking and giving back.

    async def acquire(self, session_id: str) -> int:
        """Own the session before it connects here: its epoch. Raises `OwnedElsewhere`
        when a live instance holds it."""
        if self.holds(session_id):
            return self._held[session_id].epoch
        started = self._monotonic()
        try:
            async with self._db() as db, db.begin():
                epoch = await leases.take(
                    db,
                    session_id,
                    self.instance_id,
                    now=utcnow(),
                    lease_s=self._lease_s,
                    dead=self._dead_for_taking() if self.clustered else None,
                )
        except IntegrityError:
            # The lease refers to its session (a clash of leases is an update): the
            # session was deleted since the caller looked it up, here while a start
            # waited for its lock, or on another instance (this one's copy of the
            # sessions lags by up to a poll).
            raise SessionNotFound(details={"session": session_id}) from None
        if epoch is None:
            await self.scan()  # learn who has it, for the caller to forward
            owner = self.owner_of(session_id)
            raise OwnedElsewhere(
                details={"instance": owner.id if owner else None},
                url=owner.url if owner else None,
            )
        self._held[session_id] = _Held(epoch, started + self._lease_s - CLOCK_MARGIN_S)
        return epoch

    def _dead_for_taking(self) -> set[str]:
        # Our own id counts as dead: a lease under it that we do not hold is from before
        # a restart (the member lock says no other process runs under this id).
        return self._view.dead | {self.instance_id}

    async def release(self, session_id: str) -> None:
        """The session stopped here: others may take it at once."""
        if self._held.pop(session_id, None) is None:
            return
        async with self._db() as db, db.begin():
            await leases.release(db, self.instance_id, [session_id], now=utcnow())

    # The loop.

    async def start(self) -> None:
        """Join: write this instance's row, and (clustered) take what nobody runs."""
        await self._beat()
        if self.clustered:
            await self.scan()
            await self._take_orphans()
        self._renewals.start()
        self._loop.start()

    async def drain(self) -> None:
        """Take nothing more (shutdown). The sessions are stopped next, each lease given
        back as its session stops; renewals go on meanwhile, until `leave`."""
        self._draining = True
        with contextlib.suppress(Exception):
            await self._beat()

    async def leave(self) -> None:
        """Give every lease back and drop this instance's row."""
        await self._loop.stop()
        await self._renewals.stop()
        self._held.clear()
        try:
            async with self._db() as db, db.begin():
                await leases.release(db, self.instance_id, None, now=utcnow())
                await leases.leave(db, self.instance_id)
        except Exception:
            # Not fatal: the member lock ends with the process, and the others take its
            # leases at once then; but said, since they wait meanwhile.
            log.exception("ownership_leave_failed")

    async def _run(self) -> None:
        if not self.clustered:
            return  # alone, there is nothing to scan for: renewals are all there is
        while True:
            await asyncio.sleep(SCAN_EVERY_S)
            try:
                await self.scan_and_take()
            except Exception:
                log.exception("ownership_tick_failed")

    async def _keep_loop(self) -> None:
        while True:
            await asyncio.sleep(min(SCAN_EVERY_S, self._lease_s / 6))
            try:
                await self.keep()
            except Exception:
                log.exception("ownership_renewal_failed")

    async def tick(self) -> None:
        """One round of both loops, in order (tests drive this)."""
        await self.keep()
        await self.scan_and_take()

    async def keep(self) -> None:
        """Check this member's lock, drop what may have lapsed, and renew when a third
        of the lease has passed."""
        if self.member is not None and not await self._member_intact():
            # The others may have seen our lock gone and taken everything at once.
            for session_id in list(self._held):
                await self.drop(session_id)
        if self.clustered:
            await self._fence_lapsed()
        if self._monotonic() - self._last_renewal >= self._lease_s / 3:
            await self._renew()
            await self._beat()

    async def scan_and_take(self) -> None:
        if self.clustered and not self._draining:
            await self.scan()
            await self._take_orphans()

    async def _renew(self) -> None:
        held = dict(self._held)
        if not held:
            self._last_renewal = self._monotonic()
            return
        started = self._monotonic()
        late = max(0.0, started - self._last_renewal - self._lease_s / 3)
        if math.isinf(late):
            late = 0.0  # the first renewal
        async with self._db() as db, db.begin():
            kept = await leases.renew(
                db, self.instance_id, list(held), now=utcnow(), lease_s=self._lease_s
            )
        self._last_renewal = started
        took = self._monotonic() - started
        if took > self._lease_s / 6 or late > self._lease_s / 6:
            # Leases lapse when renewals are this slow: the database or this process is
            # overloaded (or the lease too short for them).
            log.warning("lease_renewal_slow", took_s=round(took, 3), late_s=round(late, 3))
        for session_id, before in held.items():
            if self._held.get(session_id) is not before:
                continue  # released or taken again meanwhile
            if kept.get(session_id) == before.epoch:
                before.valid_until = started + self._lease_s - CLOCK_MARGIN_S
            elif not self.clustered and await self._restore(session_id, before, started):
                continue
            else:
                log.warning("lease_lost", session_id=session_id, epoch=before.epoch)
                await self.drop(session_id)

    async def _restore(self, session_id: str, held: _Held, started: float) -> bool:
        """Alone, the instance lock says nobody else runs the session: a lease that is not
        as written went with the database's state (a failover to a replica that had not
        received the last commits, a backup restored), not to another instance. Take it
        again rather than drop a session that nothing would start again. False when
        that fails (the session was deleted meanwhile), or when the instance lock is not
        surely held now: a restart of PostgreSQL ends the lock's connection too, and
        another lone instance may have taken the lock (and the lease) meanwhile."""
        if self.alone_lock is None:
            return False
        try:
            if not await self.alone_lock.held():
                return False
        except Exception:
            log.warning("lease_restore_put_off", session_id=session_id)
            return True  # cannot be told now: kept, and asked again at the next renewal
        try:
            async with self._db() as db, db.begin():
                epoch = await leases.take(
                    db, session_id, self.instance_id, now=utcnow(), lease_s=self._lease_s, dead=None
                )
        except IntegrityError:
            return False  # its session row is gone: so is the session
        if self._held.get(session_id) is not held:
            return True  # stopped or started again meanwhile: not this renewal's to drop
        if epoch is None:
            return False
        log.warning("lease_restored", session_id=session_id, was=held.epoch, epoch=epoch)
        held.epoch = epoch
        held.valid_until = started + self._lease_s - CLOCK_MARGIN_S
        return True

    async def _member_intact(self) -> bool:
        assert self.member is not None
        try:
            return await self.member.check()
        except Exception:
            return False  # not held now: nothing here may be taken as ours

    async def _fence_lapsed(self) -> None:
        """Sessions whose lease may have run out by our clock are dropped at once: the
        renewal could not be made in time (database unreachable, process paused)."""
        now = self._monotonic()
        for session_id, held in list(self._held.items()):
            if held.valid_until <= now:
                log.warning("lease_lapsed", session_id=session_id, epoch=held.epoch)
                await self.drop(session_id)

    async def drop(self, session_id: str) -> None:
        """Forget the lease here and drop the session, writing nothing."""
        self._held.pop(session_id, None)
        if self._runtime is not None:
            try:
                await self._runtime.fence(session_id)
            except Exception:
                log.exception("fence_failed", session_id=session_id)

    async def _beat(self) -> None:
        running = self._runtime.running_count if self._runtime is not None else 0
        async with self._db() as db, db.begin():
            await leases.heartbeat(
                db,
                self.instance_id,
                self.url,
                now=utcnow(),
                started_at=self._started_at,
                max_sessions=self._max_sessions,
                running=running,
                draining=self._draining,
            )

    async def scan(self) -> None:
        """Read every lease and member, and which members live (their locks)."""
        async with self._db() as db:
            all_leases = {lease.session_id: lease for lease in await leases.leases(db)}
            members = await leases.instances(db)
            live = await live_member_keys(await db.connection()) if self.clustered else set()
        names = {lease.owner for lease in all_leases.values()} | {m.id for m in members}
        dead = {name for name in names if self.clustered and member_key(name) not in live}
        dead.discard(self.instance_id)
        self._view = ClusterView(all_leases, [m for m in members if m.id not in dead], dead)
        newly_dead, self._seen_dead = dead - self._seen_dead, dead
        if newly_dead and self.on_dead is not None:
            try:
                await self.on_dead(newly_dead)
            except Exception:
                log.exception("dead_instances_claims_not_released", instances=sorted(newly_dead))
                self._seen_dead -= newly_dead  # tried again next round
        gone = [m.id for m in members if m.id in dead and _long_gone(m, self._lease_s)]
        if gone:
            async with self._db() as db, db.begin():
                await leases.forget_instances(db, gone)

    async def _take_orphans(self) -> None:
        runtime = self._runtime
        if runtime is None or self._draining or not runtime.has_room():
            return
        async with self._db() as db:
            wanted = await leases.wanted(db)
        now, clock = utcnow(), self._monotonic()
        # Failed takes wait out their pause, then are forgotten (a deleted session's too).
        self._failed = {sid: until for sid, until in self._failed.items() if until > clock}
        orphans = [
            sid
            for sid in wanted
            if sid not in self._held
            and self._failed.get(sid, -math.inf) <= clock
            and _free(self._view.leases.get(sid), now, self._dead_for_taking())
        ]
        if not orphans:
            return
        random.shuffle(orphans)  # instances taking at once collide on fewer sessions
        # Several at a time: each is a start (an engine connecting), and a dead
        # instance's sessions wait for the slowest of the survivors' runs of them.
        gate = asyncio.Semaphore(TAKE_AT_ONCE)

        async def take(session_id: str) -> bool:
            async with gate:
                return await self._take_one(runtime, session_id)

        chosen = orphans[: self._share(len(orphans))]
        if any(await asyncio.gather(*(take(sid) for sid in chosen))):
            await self._beat()  # the others judge their shares by our room

    async def _take_one(self, runtime: Runtime, session_id: str) -> bool:
        """Start one orphan here; whether it was taken."""
        if not runtime.has_room():
            return False
        lease = self._view.leases.get(session_id)
        reason = (
            "restored after server start"
            if lease is None or lease.owner == self.instance_id
            else f"taken over from {lease.owner}"
        )
        try:
            await runtime.take_over(session_id, reason)
        except (OwnedElsewhere, SessionLimitReached):
            return False
        except Exception:
            log.exception("take_over_failed", session_id=session_id)
            self._failed[session_id] = self._monotonic() + RETRY_AFTER_S
            await self.release(session_id)
            return False
        log.info("session_taken", session_id=session_id, reason=reason)
        if self.on_take_over is not None:
            try:
                await self.on_take_over(session_id)
            except Exception:
                log.exception("take_over_hook_failed", session_id=session_id)
        return True

    def _share(self, orphans: int) -> int:
        """This instance's part of the orphans: in proportion to its room among the live
        members that are not draining (the others take the rest)."""
        runtime = self._runtime
        mine = self._max_sessions - (runtime.running_count if runtime else 0)
        total = mine + sum(
            max(0, m.max_sessions - m.running)
            for m in self._view.members
            if m.id != self.instance_id and not m.draining
        )
        if total <= 0:
            return 0
        return max(1, math.ceil(orphans * mine / total))


def _free(lease: Lease | None, now: datetime, dead: Collection[str]) -> bool:
    return lease is None or lease.expires_at < now or lease.owner in dead


def _long_gone(member: InstanceRow, lease_s: float) -> bool:
    return (utcnow() - member.last_seen).total_seconds() > 10 * lease_s
