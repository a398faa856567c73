"""What one mutating request will write to the audit log, gathered while it runs.

The HTTP edge opens a draft for every POST, PUT, PATCH and DELETE under `/api`; the
authentication dependency adds the key, session resolution the session. The draft is
written once: with the request's change, by whichever unit of work commits that change
(the request's `DbDep`, or the group writer that commits an accepted send), or, when the
request committed nothing (refused, failed, or an engine-only operation), on its own as
the response starts.
"""

from __future__ import annotations

import types
import typing
from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel

# Not a key or a session: the action of a first use of a key from a new address.
FIRST_USE = "key_first_use"
OK = "ok"
_MAX_TEXT = 200
_MAX_FIELDS = 32


def clean(value: object, limit: int = _MAX_TEXT) -> str:
    """A value safe in any column on both databases (PostgreSQL refuses NUL)."""
    text = str(value)
    return "".join(ch for ch in text if ch.isprintable())[:limit]


@dataclass(slots=True)
class AuditDraft:
    method: str
    address: str | None
    request_id: str
    # The ASGI scope: the router fills in the route and its path parameters.
    scope: MutableMapping[str, Any]
    key_id: str | None = None
    session_id: str | None = None
    fields: list[str] | None = None
    # The (key, address) pair was not known here: claim it with the entry.
    first_use: bool = False
    written: bool = False
    # The request is over: tasks it spawned (they copy its context) must not write it.
    closed: bool = False

    @property
    def route(self) -> APIRoute | None:
        route = self.scope.get("route")
        return route if isinstance(route, APIRoute) else None

    @property
    def pending(self) -> bool:
        return not (self.written or self.closed) and self.route is not None

    def target(self) -> dict[str, str] | None:
        params = self.scope.get("path_params") or {}
        return {clean(k, 40): clean(v) for k, v in params.items()} or None

    def mark_written(self) -> None:
        self.written = True
        self.first_use = False


current_draft: ContextVar[AuditDraft | None] = ContextVar("openwa.audit_draft", default=None)


def note_key(key_id: str) -> AuditDraft | None:
    """The request's key, once it authenticated; the draft, if the request is audited."""
    draft = current_draft.get()
    if draft is not None:
        draft.key_id = key_id
    return draft


def note_session(session_id: str) -> None:
    """The session the request resolved (its path may have named it by name)."""
    draft = current_draft.get()
    if draft is not None:
        draft.session_id = session_id


# Per route (routes are not hashable); each entry keeps its route, so ids are not reused.
_ALIASES: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def body_aliases(route: APIRoute) -> frozenset[str]:
    """The wire names of the route's JSON body fields: only these are ever recorded, so
    a name a client made up (or a value sent as a name) never reaches the log."""
    cached = _ALIASES.get(id(route))
    if cached is None:
        cached = _ALIASES[id(route)] = (route, _aliases_of(route))
    return cached[1]


def _aliases_of(route: APIRoute) -> frozenset[str]:
    body = route.body_field
    if body is None:
        return frozenset()
    annotation = body.field_info.annotation
    candidates = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    names: set[str] = set()
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                names.add(info.alias or name)
    return frozenset(names)


def _is_union(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def field_names(route: APIRoute | None, body: object) -> list[str] | None:
    if route is None or not isinstance(body, dict):
        return None
    known = body_aliases(route)
    return sorted(name for name in body if name in known)[:_MAX_FIELDS] or None
