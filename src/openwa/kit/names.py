"""Session names: human-chosen, unique, usable in paths in place of the id."""

from __future__ import annotations

import re

from openwa.kit.ids import SESSION_ID_RE

SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# A name may not look like an id, or `{id}` in a path would be ambiguous; the whole
# `ses_` prefix is reserved (any case) so that no future id form can collide either.
_RESERVED_PREFIX = "ses_"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a session name, or None when it can."""
    if not SESSION_NAME_RE.fullmatch(name):
        return "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    if name.lower().startswith(_RESERVED_PREFIX):
        return "may not start with 'ses_' (reserved for session ids)"
    return None


def is_session_id(ref: str) -> bool:
    return SESSION_ID_RE.fullmatch(ref) is not None


def is_session_ref(ref: str) -> bool:
    """True when `ref` can name a session in a path: an id or a valid name."""
    return is_session_id(ref) or name_problem(ref) is None
