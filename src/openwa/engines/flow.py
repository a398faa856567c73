"""Flow control of a session's reports, from the core back to its engine.

Reports (messages, acks, changes) wait in a queue per session until they are written.
When writing falls behind (a database that stalls, a history sync of thousands of
messages at link time), that queue would grow until the process runs out of memory. The
runtime closes the session's `ReportFlow` when the queue reaches its bound
(`ENGINE_REPORT_QUEUE_MAX`) and opens it again once it has drained to half. An engine
holds back what it can while the flow is closed, so that what is unwritten waits where
it costs nothing and is not lost:

- the mock makes whoever hands it a report wait (a `mock/inbound` call, a sender's
  transmission);
- Baileys' bridge pauses the session's websocket: nothing more is read from WhatsApp,
  which keeps what it has not been acknowledged;
- an engine that cannot hold back ignores it, and its reports queue as before:
  whatsmeow never stops reading (once its handler queue is full it goes on in new
  goroutines, so blocking its callbacks would only move the memory into Go and lose
  the order), and whatsapp-web.js' browser is out of reach.

Whatever the engine, a held session sends nothing until it goes on (`sending_sessions`).

Nothing is dropped: the bound is where holding back starts, and what is already on its
way (between the engine's process and ours) is still queued. A session that stops,
restarts, logs out or ends, or a server that shuts down gracefully, disconnects the
engine and then writes what is queued before it goes on (`SessionRuntime._drain`,
within `SHUTDOWN_TIMEOUT_S`; what is left past it is logged with its count). A fence
(the session's lease lost to another instance: see `SessionRuntime.fence`) drops the
queue, and so does a delete (the messages go with the session).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from openwa.kit.backoff import backoff_s

log = structlog.get_logger(__name__)

_TELL_TRIES = 3
_TELL_BACKOFF_S = 0.5  # then doubling, between the tries


class ReportsPutOff(Exception):
    """A run of reports waiting out the database was given up for now, nothing of it
    written: someone waits for the session (a stop, a restart), and the run would hold
    them up for as long as the database is away. Whoever handed the run over keeps it
    and hands it over again (the session's worker, or the stop's drain), with the same
    `Patience`."""


@dataclass
class Patience:
    """How long a run of reports may still wait out the database: the tries of one run
    share it across put-offs (`ReportsPutOff`), so that a stop or a config change now
    and then does not start its clock again, and the batches of one drain share one."""

    # By the monotonic clock; set by the applier at the run's first failure.
    until: float | None = None
    # Pauses made so far (how long the next one is).
    pauses: int = 0


# Pauses before a call that failed for a reason of the moment is tried again: from
# 0.1 s, doubling up to 1.6 s, ±20 %.
_RETRY_BASE_S = 0.1
_RETRY_MAX_S = 1.6


class Retries:
    """What is left of a call's patience (a run of reports, a session's status change),
    in one call: pauses between its tries while the database refuses it for a reason
    of the moment, each logged as `event`."""

    def __init__(
        self,
        session_id: str,
        patience_s: float,
        put_off: Callable[[], bool] | None,
        patience: Patience | None,
        *,
        event: str,
    ) -> None:
        self._session_id = session_id
        self._patience_s = patience_s
        self._patience = patience if patience is not None else Patience()
        self._event = event
        # Until something of the call is written: a call put off is handed over again
        # whole, and what it wrote would be written (and announced) twice.
        self.put_off = put_off

    async def pause(self, error: Exception, **logged: Any) -> bool:
        """Wait before the next try; False, at once, when the patience is used up.
        Raises `ReportsPutOff`, at once or after the pause, when `put_off` says so.
        `logged`: what the log line says of the call, beside the error."""
        self._put_off_now()
        patience = self._patience
        if patience.until is None:
            patience.until = time.monotonic() + self._patience_s
        delay = backoff_s(patience.pauses, _RETRY_BASE_S, _RETRY_MAX_S)
        if time.monotonic() + delay > patience.until:
            return False
        log.warning(
            self._event,
            session_id=self._session_id,
            attempt=patience.pauses + 1,
            error=repr(error)[:500],
            **logged,
        )
        await asyncio.sleep(delay)
        patience.pauses += 1
        self._put_off_now()
        return True

    def _put_off_now(self) -> None:
        if self.put_off is not None and self.put_off():
            raise ReportsPutOff(self._session_id)


class ReportFlow:
    """Open while the core keeps up with a session's reports."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._released = False
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @property
    def released(self) -> bool:
        """Open for good because the session's runtime is gone (`release`)."""
        return self._released

    async def wait_open(self) -> None:
        """Until open. Waiters woken together re-check in turn: the first one's report
        may close it again, and the rest go on waiting (the bound holds for them too)."""
        while not self._open.is_set():
            await self._open.wait()

    def listen(self, listener: Callable[[bool], None]) -> None:
        """`listener(open)` is told each change, at once (it must not block)."""
        self._listeners.append(listener)

    def release(self) -> None:
        """Open for good: the session's runtime is gone, and whoever still waits must not
        wait on a queue that nobody drains any more. The engine is not told: its client
        is disconnected next, and a "go on" now would have it read (and acknowledge to
        WhatsApp) what it held back, into a queue being closed."""
        self._released = True
        self._open.set()

    def set_open(self, value: bool) -> None:
        if value == self.is_open or (self._released and not value):
            return
        if value:
            self._open.set()
        else:
            self._open.clear()
        for listener in self._listeners:
            listener(value)


class HoldTeller:
    """Tells an engine process to hold a session's reports back, or to go on, as its
    flow changes: one word at a time, so the last one wins. A connection the process
    starts anew reads freely: `connected()` says it again if the flow is closed."""

    def __init__(
        self, flow: ReportFlow, tell: Callable[[bool], Awaitable[object]], session_id: str
    ) -> None:
        self._flow = flow
        self._tell_process = tell
        self._session_id = session_id
        self._told_held = False
        self._telling: asyncio.Task[None] | None = None
        flow.listen(self._changed)

    def connected(self) -> None:
        self._told_held = False
        if not self._flow.is_open:
            self._changed(False)

    def _changed(self, _is_open: bool) -> None:
        if self._telling is None or self._telling.done():
            self._telling = asyncio.create_task(self._tell())

    async def _tell(self) -> None:
        failures = 0
        while (held := not self._flow.is_open) != self._told_held:
            try:
                await self._tell_process(held)
            except Exception as exc:
                # A word that does not get through is said again a few times (a "go on"
                # lost would leave the connection paused); past that, the session is not
                # in the process (yet, or any more), and its next connect tells it anew.
                failures += 1
                log.warning("engine_hold_untold", session_id=self._session_id, error=str(exc))
                if failures >= _TELL_TRIES:
                    return
                await asyncio.sleep(
                    backoff_s(failures - 1, _TELL_BACKOFF_S, _TELL_BACKOFF_S * 2**_TELL_TRIES)
                )
                continue
            self._told_held = held
