"""Whether the request being served has committed anything yet.

A request that fails on a conflict with other work of the moment (a deadlock
PostgreSQL broke by rolling its transaction back, SQLite busy past its timeout) is
answered "nothing was written, try again" (503) only when that holds: a call that
committed a part first (a session created, then its start failed) must not invite a
retry that finds the part there, and is a 500 like any other failure.

Counted: every commit of a session made in the request's context (its own unit of
work, and transactions it runs inline, such as a session's start), and each group
commit it waited for. Tasks a request starts inherit its context; their commits count
for it too, which errs towards the 500.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_commits: ContextVar[list[bool] | None] = ContextVar("openwa.request_commits", default=None)


def begin_request() -> Token[list[bool] | None]:
    return _commits.set([])


def end_request(token: Token[list[bool] | None]) -> None:
    _commits.reset(token)


def note_commit() -> None:
    held = _commits.get()
    if held is not None and not held:
        held.append(True)


def committed_in_request() -> bool:
    return bool(_commits.get())
