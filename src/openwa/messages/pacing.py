"""Pacing a session's sends: a random gap between two messages it hands to its engine.

Accounts that send in bursts, at machine speed and regular intervals, are the ones
WhatsApp restricts and bans. A gap drawn anew each time from `[minMs, maxMs]` spaces a
session's sends as a person's would be spaced. It is set per instance (`SEND_INTERVAL_MIN_MS`,
`SEND_INTERVAL_MAX_MS`; off by default) and per session (`config.sendInterval`, which
wins; `{minMs: 0}` turns it off for that session). Only the instance that runs a session
sends for it, so the times live in its memory.

A gap outlives a pause in the session's sending: one that reconnects, is held back
(engine reports past their bound) or is stopped and started again within its gap still
waits out the rest of it, rather than sending at once when it comes back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Self

import structlog
from pydantic import Field, ValidationError, model_validator

from openwa.kit.schema import StrictCamelModel

log = structlog.get_logger(__name__)

MAX_INTERVAL_MS = 600_000


# Unreadable stored intervals remembered as logged (then forgotten all at once).
_UNREADABLE_KEPT = 256
# The longest gap when only the shortest is given, as a multiple of it.
DEFAULT_SPREAD = 1.5


class SendInterval(StrictCamelModel):
    min_ms: int = Field(ge=0, le=MAX_INTERVAL_MS, description="shortest gap between two sends")
    max_ms: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INTERVAL_MS,
        description="longest gap (default: `minMs` and half as much again: a gap that never "
        "varies is as much a machine's as none)",
    )

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.max_ms is not None and self.max_ms < self.min_ms:
            raise ValueError("maxMs must be at least minMs")
        return self

    @property
    def longest_ms(self) -> int:
        """`maxMs`, else half as much again as `minMs`: with only a minimum given, every
        gap was exactly it, a regular interval, which WhatsApp restricts accounts for as
        it does bursts."""
        if self.max_ms is not None:
            return self.max_ms
        return min(MAX_INTERVAL_MS, round(self.min_ms * DEFAULT_SPREAD))


class Pacing:
    """When each paced session running here may hand over its next message."""

    def __init__(
        self, default: SendInterval | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._default = default
        self._clock = clock
        self._next_at: dict[str, float] = {}  # session -> monotonic time; only while it has sends
        # Gaps still running of sessions not paced here at the moment (not sending, or
        # paced no more): remembered, never waited on; each is dropped once it ends.
        self._resting: dict[str, float] = {}
        self._unreadable: set[str] = set()  # stored values already logged as unreadable

    def interval(self, config: Mapping[str, Any] | None) -> SendInterval | None:
        """The session's gap (its config's, else the instance's); None when it sends
        at the engine's pace. A stored value that no longer reads (edited by hand) falls
        back to the instance's, and stops no other session's sends: it used to turn the
        session's pacing off, sends at machine speed, against an operator's setting."""
        raw = (config or {}).get("sendInterval")
        chosen = self._default
        if raw is not None:
            try:
                chosen = SendInterval.model_validate(raw)
            except ValidationError:
                # Asked before each message of a run: said once per value.
                said = str(raw)[:200]
                if said not in self._unreadable:
                    if len(self._unreadable) >= _UNREADABLE_KEPT:
                        self._unreadable.clear()
                    self._unreadable.add(said)
                    log.warning("send_interval_unreadable", value=said)
                # `chosen` is still the instance's.
        return chosen if chosen is not None and chosen.longest_ms > 0 else None

    def may_send(self, session_id: str) -> bool:
        return self._next_at.get(session_id, 0.0) <= self._clock()

    def sent(self, session_id: str, interval: SendInterval) -> None:
        gap_ms = random.uniform(interval.min_ms, interval.longest_ms)
        self._next_at[session_id] = self._clock() + gap_ms / 1000

    def claimed(self, looked_for: Collection[str], found: Collection[str]) -> None:
        """Paced sessions whose claim found nothing have nothing waiting: no wake-up."""
        for session_id in looked_for:
            if session_id not in found:
                self._next_at.pop(session_id, None)

    def keep_only(self, paced: Collection[str]) -> None:
        """Wait only for the sessions paced here now. The others' gaps rest until they
        are paced again (a gap waited on for a session that cannot send would wake the
        worker at once, and again, for ever); an ended gap is forgotten."""
        now = self._clock()
        for session_id in [s for s in self._next_at if s not in paced]:
            self._resting[session_id] = self._next_at.pop(session_id)
        for session_id, next_at in list(self._resting.items()):
            if next_at <= now:
                del self._resting[session_id]
            elif session_id in paced:
                self._next_at[session_id] = self._resting.pop(session_id)

    def wait_s(self) -> float | None:
        """Seconds until a paced session may send again, if one waits to."""
        if not self._next_at:
            return None
        return max(0.0, min(self._next_at.values()) - self._clock())
