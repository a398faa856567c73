"""The live streams (WebSocket and SSE) open on this instance, per API key.

Two jobs, in one place: caps (`STREAMS_PER_KEY` per key, `MAX_STREAMS` on the instance),
so a key cannot hold the instance's connections or memory hostage; and revocation, so a
key that is deleted, changed or expired loses its open streams at once, not only its
next REST call. The key service calls `revoke` from its after-commit hook; a stream of
a key with `expiresAt` has a timer on the event loop for that moment (no polling); the
stream handlers wait on `LiveStream.revoked` beside their work and end when it is set.

The registry is per process. With several instances, a revocation committed on one
reaches the others' registries over Redis (`cluster/sync.py`; the cache already evicts
the key everywhere, so their REST answers 401 already), and `STREAMS_PER_KEY` is also
counted across them (`cluster/stream_slots.py`); `MAX_STREAMS` stays per instance.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from openwa.errors import TooManyStreams
from openwa.keys.principal import Principal
from openwa.kit.clock import utcnow

# How long a client refused for the caps is told to wait before it tries again.
RETRY_AFTER_S = 5
# A stream authenticated just before its key was revoked registers just after: revoked
# ids are remembered this long (beyond the key cache's 30 s), so it starts revoked.
_REMEMBER_REVOKED_S = 120.0
_CHANGED = "the API key was changed; reconnect"


class SharedSlots(Protocol):
    """A key's streams counted across instances."""

    async def claim(self, key_id: str, member: str, limit: int) -> bool: ...

    def release(self, key_id: str, member: str) -> None: ...

    async def close(self) -> None: ...


class LiveStream:
    """One open stream's slot: `revoked` is set when its key stops being valid, and
    `reason` says why (for the WebSocket's close reason)."""

    def __init__(self, key_id: str, release: Callable[[LiveStream], None]) -> None:
        self.key_id = key_id
        self.revoked = asyncio.Event()
        self.reason = "the API key was revoked"
        self._release = release
        self._released = False
        self._expiry: asyncio.TimerHandle | None = None
        self.member = secrets.token_hex(8)  # its name among the key's shared slots
        self.shared = False  # whether it holds one

    def end(self, reason: str) -> None:
        if not self.revoked.is_set():
            self.reason = reason
            self.revoked.set()

    def end_at_expiry(self, principal: Principal) -> None:
        """End the stream when the key's `expiresAt` passes (needs a running loop)."""
        if principal.expires_at is None:
            return
        delay = max(0.0, (principal.expires_at - utcnow()).total_seconds())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.end, "the API key expired")

    def release(self) -> None:
        """Give the slot back; idempotent, so every way out of a handler may call it."""
        if not self._released:
            self._released = True
            if self._expiry is not None:
                self._expiry.cancel()
            self._release(self)


class StreamRegistry:
    def __init__(self, per_key: int, total: int, shared: SharedSlots | None = None) -> None:
        self._per_key = per_key
        self._total = total
        self._shared = shared
        self._by_key: dict[str, set[LiveStream]] = {}
        self._count = 0
        # key id -> (when it is forgotten, the key as it was changed to; None: deleted)
        self._revoked: dict[str, tuple[float, Principal | None]] = {}

    def open(self, key_id: str, principal: Principal | None = None) -> LiveStream:
        """A slot for a new stream of `key_id`, or `TooManyStreams` over either cap.

        `principal` is the key as the stream authenticated it: its expiry ends the
        stream, and a stream opened with a key as it was before a change starts ended.
        """
        held = self._by_key.get(key_id, set())
        if len(held) >= self._per_key:
            raise TooManyStreams(
                "this key has STREAMS_PER_KEY streams open",
                details={"limit": self._per_key, "scope": "key"},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if self._count >= self._total:
            raise TooManyStreams(
                "this instance has MAX_STREAMS streams open",
                details={"limit": self._total, "scope": "instance"},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        stream = LiveStream(key_id, self._released)
        self._by_key.setdefault(key_id, set()).add(stream)
        self._count += 1
        if (revoked := self._revoked.get(key_id)) is not None:
            successor = revoked[1]
            if successor is None or successor != principal:
                stream.end("the API key was revoked" if successor is None else _CHANGED)
        if principal is not None:
            stream.end_at_expiry(principal)
        return stream

    async def open_live(self, key_id: str, principal: Principal | None = None) -> LiveStream:
        """`open`, then (several instances) a slot among the key's streams everywhere."""
        stream = self.open(key_id, principal)
        if self._shared is None:
            return stream
        if not await self._shared.claim(key_id, stream.member, self._per_key):
            stream.release()
            raise TooManyStreams(
                "this key has STREAMS_PER_KEY streams open across the instances",
                details={"limit": self._per_key, "scope": "key"},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        stream.shared = True
        return stream

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()

    def revoke(self, key_id: str, successor: Principal | None = None) -> None:
        """End every open stream of `key_id` (each handler closes itself when told).

        `successor`: the key as a change (PATCH) left it, None when it was deleted. New
        streams opened with exactly that key are left alone; ones authenticated before
        the change (from the cache, say) that register after it start ended.
        """
        now = time.monotonic()
        self._revoked = {k: v for k, v in self._revoked.items() if v[0] > now}
        self._revoked[key_id] = (now + _REMEMBER_REVOKED_S, successor)
        reason = "the API key was revoked" if successor is None else _CHANGED
        for stream in self._by_key.get(key_id, ()):
            stream.end(reason)

    def count(self, key_id: str | None = None) -> int:
        if key_id is None:
            return self._count
        return len(self._by_key.get(key_id, ()))

    def _released(self, stream: LiveStream) -> None:
        held = self._by_key.get(stream.key_id)
        if held is None or stream not in held:
            return
        held.discard(stream)
        self._count -= 1
        if not held:
            del self._by_key[stream.key_id]
        if stream.shared and self._shared is not None:
            self._shared.release(stream.key_id, stream.member)
