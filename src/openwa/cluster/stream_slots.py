"""`STREAMS_PER_KEY` counted across instances, in Redis.

Each open stream holds a member of a sorted set per key, scored with the time it lapses
unless renewed; its instance renews the scores of its streams while they are open, and
removes them when they close. A slot whose instance died lapses by itself: a count
never stays too high for longer than `TTL_S`. Claiming is one Lua script, so two
instances cannot both take the last slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

TTL_S = 60.0
RENEW_EVERY_S = 20.0

# KEYS[1] the key's set; ARGV: now, lapses at, member, limit. 1 if claimed.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1])))
return 1
"""


class RedisStreamSlots:
    def __init__(self, url: str, namespace: str) -> None:
        self._redis = Redis.from_url(url)
        self._ns = namespace
        self._held: dict[str, set[str]] = {}  # key id -> members held by this instance
        self._claim: Any = self._redis.register_script(_CLAIM)
        self._renewer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def _key(self, key_id: str) -> str:
        return f"{self._ns}{key_id}"

    async def claim(self, key_id: str, member: str, limit: int) -> bool:
        """Take a slot of `key_id` unless `limit` are held across the cluster. Redis
        down: the slot is given (this instance's own cap still holds)."""
        now = time.time()
        try:
            taken = await self._claim(
                keys=[self._key(key_id)], args=[now, now + TTL_S, member, limit]
            )
        except Exception as exc:
            log.warning("stream_slots_unavailable", error=str(exc))
            taken = 1
        if taken:
            self._held.setdefault(key_id, set()).add(member)
            if self._renewer is None:
                self._renewer = asyncio.create_task(self._renew(), name="stream-slots")
        return bool(taken)

    def release(self, key_id: str, member: str) -> None:
        """Give a slot back (called from synchronous code: the removal runs after)."""
        held = self._held.get(key_id)
        if held is not None:
            held.discard(member)
            if not held:
                del self._held[key_id]
        task = asyncio.get_running_loop().create_task(self._remove(key_id, member))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _remove(self, key_id: str, member: str) -> None:
        with contextlib.suppress(Exception):  # it lapses by itself otherwise
            await self._redis.zrem(self._key(key_id), member)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            lapses = time.time() + TTL_S
            for key_id, members in list(self._held.items()):
                try:
                    await self._redis.zadd(
                        self._key(key_id), dict.fromkeys(members, lapses), xx=True
                    )
                    await self._redis.expire(self._key(key_id), int(TTL_S) + 1)
                except Exception as exc:
                    log.warning("stream_slots_renew_failed", error=str(exc))

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for task in list(self._pending):
            with contextlib.suppress(Exception):
                await task
        await self._redis.aclose()
