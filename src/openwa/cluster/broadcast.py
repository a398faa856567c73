"""Telling the other instances that something changed, through Redis pub/sub.

Only a wake-up, never the data: what changed is read from the database, which every
instance shares. Pub/sub loses messages (a subscriber reconnecting, Redis restarting),
so nothing relies on it alone: each reader also polls (`sync.py`, the event pump, the
send worker), and a message only makes it act sooner.

Messages are coalesced: a busy instance commits events thousands of times a second,
and one message per short window says all the others need.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

import orjson
import structlog
from redis.asyncio import Redis

from openwa.kit.backoff import backoff_s

log = structlog.get_logger(__name__)

Handler = Callable[[str], object]
_FLUSH_EVERY_S = 0.02


class Broadcast(Protocol):
    def publish(self, kind: str, ident: str = "") -> None:
        """Tell the others (never blocks; sent with the next flush)."""

    def on(self, kind: str, handler: Handler) -> None:
        """`handler(ident)` for each message of `kind` from another instance."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class NoBroadcast:
    """One instance: there is nobody to tell."""

    def publish(self, kind: str, ident: str = "") -> None:
        return None

    def on(self, kind: str, handler: Handler) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBroadcast:
    def __init__(self, url: str, channel: str, instance_id: str) -> None:
        self._redis = Redis.from_url(url)
        self._channel = channel
        self._me = instance_id
        self._handlers: dict[str, list[Handler]] = {}
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def publish(self, kind: str, ident: str = "") -> None:
        self._pending.add((kind, ident))
        self._wake.set()

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send(), name="broadcast-send"),
            asyncio.create_task(self._listen(), name="broadcast-listen"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._redis.aclose()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._pending = sorted(self._pending), set()
            message = orjson.dumps({"from": self._me, "items": items})
            try:
                await self._redis.publish(self._channel, message)
            except Exception as exc:  # the others poll meanwhile
                log.warning("broadcast_publish_failed", error=str(exc))
            await asyncio.sleep(_FLUSH_EVERY_S)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    attempt = 0
                    async for message in pubsub.listen():
                        self._deliver(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("broadcast_listen_failed", error=str(exc))
            await asyncio.sleep(backoff_s(attempt, 0.5, 10.0))
            attempt += 1

    def _deliver(self, data: object) -> None:
        try:
            message = orjson.loads(data) if isinstance(data, bytes | str) else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict) or message.get("from") == self._me:
            return
        for item in message.get("items") or []:
            if not (isinstance(item, list) and len(item) == 2):
                continue
            kind, ident = str(item[0]), str(item[1])
            for handler in self._handlers.get(kind, ()):
                try:
                    handler(ident)
                except Exception:
                    log.exception("broadcast_handler_failed", kind=kind)
