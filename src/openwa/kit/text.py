"""Text an engine reports, made storable: engines cannot be refused like clients.

A push name or a disconnect reason comes from WhatsApp or an engine's error text; a NUL
in it makes PostgreSQL refuse the whole write (and with it every report of the batch
until the batch is retried report by report), and a length past the column's makes the
write fail as well. So such text is cleaned before storage, never refused."""

from __future__ import annotations

import re

# C0 controls (NUL among them), DEL and C1 controls: never meaningful in a name or a
# one-line reason, and NUL is not storable at all.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

REASON_MAX = 1024
"""A status reason or last error: one line of explanation, not a log."""


def clean_text(value: str | None, limit: int) -> str | None:
    """`value` without control characters, cut to `limit` characters; None stays None."""
    if value is None:
        return None
    return _CONTROLS.sub("", value)[:limit]
