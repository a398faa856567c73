"""Stored files that belong to nothing any more, found and deleted by maintenance.

Files are stored before the rows that refer to them are committed, and deleted after
the rows that referred to them are gone, so a crash, an unreachable store or a database
that is down at the wrong moment can leave files behind. Two kinds:

- Under a deleted session's prefix: its media is deleted right after the session, but
  that can fail, be cut short by a crash, or be outrun by a late engine report that
  stores one more file. The delete leaves a tombstone in its own transaction, and the
  prefix is emptied again `TOMBSTONE_WAIT` after the session's row went; only then
  does the tombstone go. (The tombstone is written first, as the delete begins, and
  says the session is deleted while its rows go: `sessions/removal.py`.)
- Under a live session's prefix, a file no message refers to: a send whose bytes were
  stored but whose row never committed (the database down, the process killed in
  between), or a file whose delete failed when retention cleared its message. Such a
  file is deleted once it is older than `ORPHAN_GRACE`, far longer than a file waits for
  its row (engine reports wait in memory while the database is down), and never the
  session's engine profile, which no message refers to.

Only prefixes that are sessions' ids, live or remembered, are looked at: a bucket shared
with other data loses nothing that OpenWA did not store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.db.models import MediaTombstoneRow, MessageRow, SessionRow
from openwa.db.repository import Repository
from openwa.db.unit_of_work import unit_of_work
from openwa.kit.redact import redact_text
from openwa.storage.base import Storage
from openwa.storage.keys import is_safe_key, is_safe_part, profile_key

log = structlog.get_logger(__name__)

TOMBSTONE_WAIT = timedelta(minutes=10)
ORPHAN_GRACE = timedelta(hours=24)
_TOMBSTONES_PER_RUN = 100
# One call of the store at most (obstore retries a store that does not answer for
# minutes): the other maintenance steps wait behind the sweep.
_STORE_CALL_S = 30.0


class MediaTombstones(Repository[MediaTombstoneRow]):
    model = MediaTombstoneRow

    async def remember(self, session_id: str, at: datetime) -> None:
        """The deleted session's prefix is to be emptied again (a later delete of a
        session of the same id moves the time on)."""
        await self.db.merge(MediaTombstoneRow(session_id=session_id, deleted_at=at))


class MediaSweep:
    """Deletes the files described above; stateless between runs."""

    def __init__(self, db: async_sessionmaker[AsyncSession], storage: Storage) -> None:
        self._db = db
        self._storage = storage

    async def empty_deleted(self, now: datetime) -> int:
        """Empty the prefixes of sessions deleted at least `TOMBSTONE_WAIT` ago; files
        deleted. A tombstone whose session's row is still there stays: that delete has
        not finished (`sessions/removal.py`)."""
        async with self._db() as db:
            tombstones = list(
                (
                    await db.execute(
                        select(MediaTombstoneRow)
                        .where(
                            MediaTombstoneRow.deleted_at < now - TOMBSTONE_WAIT,
                            ~exists().where(SessionRow.id == MediaTombstoneRow.session_id),
                        )
                        .order_by(MediaTombstoneRow.deleted_at)
                        .limit(_TOMBSTONES_PER_RUN)
                    )
                ).scalars()
            )
        removed = 0
        for tombstone in tombstones:
            session_id = tombstone.session_id
            if is_safe_part(session_id):
                deleted = await delete_prefix(self._storage, session_id)
                if deleted is None:
                    # The store unreachable: this and the other tombstones stay for the
                    # next run, rather than each waiting out the store in turn.
                    break
                removed += deleted
            async with unit_of_work(self._db) as db:
                # Only this tombstone: a delete of a newer session of the id keeps its own.
                await db.execute(
                    delete(MediaTombstoneRow).where(
                        MediaTombstoneRow.session_id == session_id,
                        MediaTombstoneRow.deleted_at == tombstone.deleted_at,
                    )
                )
        if removed:
            log.info("deleted_sessions_media_deleted", count=removed)
        return removed

    async def sweep_live(self, before: datetime) -> int:
        """Delete live sessions' files last written before `before` that no message
        refers to (the engine profile aside); files deleted. A store that fails ends the
        run (the next is hours away)."""
        async with self._db() as db:
            sessions = list((await db.execute(select(SessionRow.id))).scalars())
        removed = 0
        try:
            for session_id in sessions:
                if not is_safe_part(session_id):
                    continue
                async with contextlib.aclosing(self._storage.listed(session_id, before)) as listing:
                    while True:
                        async with asyncio.timeout(_STORE_CALL_S):
                            keys = await anext(listing, None)
                        if keys is None:
                            break
                        for key in await self._unreferenced(session_id, keys):
                            removed += await self._delete_unreferenced(key)
        except Exception as exc:
            _store_failed("unreferenced_media_not_swept", exc)
        if removed:
            log.info("unreferenced_media_deleted", count=removed)
        return removed

    async def _delete_unreferenced(self, key: str) -> int:
        """Delete one file; 1 when it went. One the store refuses (a permission, an
        object lock) is logged and passed: the listing comes in the same order each
        time, and ending the run there left every file after it for good. A store that
        does not answer ends the run (TimeoutError goes up)."""
        try:
            async with asyncio.timeout(_STORE_CALL_S):
                await self._storage.delete(key)
        except FileNotFoundError:
            return 0
        except TimeoutError:
            raise
        except Exception as exc:
            log.warning("unreferenced_media_not_deleted", key=key, error=repr(exc)[:300])
            return 0
        return 1

    async def _unreferenced(self, session_id: str, keys: list[str]) -> list[str]:
        """Of a session's `keys`, those no message refers to, but its engine profile and
        names OpenWA would not make (not ours to delete)."""
        async with self._db() as db:
            referenced = await referenced_keys(db, keys)
        kept = referenced | {profile_key(session_id)}
        return [key for key in keys if key not in kept and is_safe_key(key)]


async def referenced_keys(db: AsyncSession, keys: Collection[str]) -> set[str]:
    """Which of `keys` a message names (by the key alone: ours, unique, the session in
    its prefix; with the session too, SQLite walked every message of the session)."""
    found = await db.execute(select(MessageRow.media_key).where(MessageRow.media_key.in_(keys)))
    return {key for key in found.scalars() if key is not None}


async def delete_prefix(
    storage: Storage, session_id: str, timeout_s: float = _STORE_CALL_S
) -> int | None:
    """Every file under a session's prefix deleted (a session delete, then the sweep of
    its tombstone); how many, or None when the store failed or did not answer within
    `timeout_s` (obstore retries for minutes), which is logged."""
    try:
        async with asyncio.timeout(timeout_s):
            return await storage.delete_under(session_id)
    except Exception as exc:
        _store_failed("session_media_not_deleted", exc, session_id=session_id)
        return None


def _store_failed(event: str, exc: Exception, **fields: str) -> None:
    error = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
    log.warning(event, error=redact_text(error) or type(exc).__name__, **fields)
