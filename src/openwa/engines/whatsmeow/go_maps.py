"""The worker-wide readers-writer lock around neonize's Go maps.

neonize 0.5.2 keeps every client of a process in plain Go maps (`clients`, `StopSignal`,
`eventChannel` in `goneonize/main.go`) without a lock. `Neonize()` (a connect) writes all
three and `Stop` deletes from all three; every other call reads `clients`. In Go a map
read during a write is as fatal as two writes (`fatal error: concurrent map writes`,
exit 134, every session of the process gone), and a per-session lock cannot prevent it:
the maps are shared by all sessions of the process. So a connect and a stop hold this
lock exclusively, and every other call into Go holds it shared.

Writers go first: a reader arriving while a writer waits queues behind it, else a busy
worker (some call always in flight) would never let a connect through. The lock is not
owned by a thread: a connect takes it on its own thread and the first sign of Go having
passed its map writes (see `WorkerSession`) releases it from another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class GoMapsLock:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    def acquire_shared(self) -> None:
        with self._changed:
            while self._writing or self._writers_waiting:
                self._changed.wait()
            self._readers += 1

    def release_shared(self) -> None:
        with self._changed:
            self._readers -= 1
            if self._readers == 0:
                self._changed.notify_all()

    def acquire_exclusive(self) -> None:
        with self._changed:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._changed.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True

    def release_exclusive(self) -> None:
        with self._changed:
            self._writing = False
            self._changed.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()


class BoundedHold:
    """A hold released once, by whichever comes first: Go's sign that it is past its map
    accesses, the end of the Go call, or `bound_s`. A connect holds the lock exclusively
    this way (a dial that hangs must not freeze the worker's other sessions for a
    minute), a download shared (Go reads its map once, as the call starts; the download
    itself may take minutes, or hang)."""

    def __init__(self, lock: GoMapsLock, bound_s: float, *, exclusive: bool = True) -> None:
        self._lock = lock
        self._bound_s = bound_s
        self._exclusive = exclusive
        self._guard = threading.Lock()
        self._held = False
        self.reached = threading.Event()

    def __enter__(self) -> BoundedHold:
        if self._exclusive:
            self._lock.acquire_exclusive()
        else:
            self._lock.acquire_shared()
        self._held = True
        threading.Thread(target=self._expire, name="go-maps-hold", daemon=True).start()
        return self

    def _expire(self) -> None:
        self.reached.wait(self._bound_s)
        self._release()

    def go_reached(self) -> None:
        """Go called back, or its call returned: past its map accesses (and its dial)."""
        self.reached.set()
        self._release()

    def _release(self) -> None:
        with self._guard:
            if self._held:
                self._held = False
                if self._exclusive:
                    self._lock.release_exclusive()
                else:
                    self._lock.release_shared()

    def __exit__(self, *_exc: object) -> None:
        self.go_reached()
