"""One retry schedule for every retrier: sends, webhook deliveries, reconnects."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, max_s: float, jitter: float = 0.2) -> float:
    """Seconds to wait before retry `attempt` (0 for the first retry): `base_s` doubling
    up to `max_s`, then ±`jitter`, so that many retriers never move in step."""
    raw = min(base_s * 2.0 ** min(max(attempt, 0), 30), max_s)
    return raw * random.uniform(1 - jitter, 1 + jitter)
