"""Every mutating `/api` call leaves an audit entry, however it ends.

A pure ASGI middleware opens the request's draft (audit/draft.py) and sets it as the
request's `request_work`, so the unit of work that commits the change (the request's
`DbDep`, or the group writer for an accepted send) commits the entry with it. A call
that committed nothing by the time its response starts (refused, failed, or an
engine-only operation such as start or typing) gets its entry in a small transaction of
its own then: refusals carry their error code as the outcome. Calls that match no route
are not calls of any operation and are not recorded. A call forwarded to the instance
that runs its session is recorded there, once (api/forwarding.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openwa.api.context import request_id_var
from openwa.api.errors import unexpected_outcome
from openwa.api.forwarding import served_elsewhere
from openwa.audit.draft import OK, AuditDraft, clean, current_draft, field_names
from openwa.db.unit_of_work import request_work

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Bodies up to this size are read for their field names; larger ones (media) are not.
_FIELDS_BODY_LIMIT = 65_536


def _error_code(body: bytes, status: int) -> str:
    try:
        code = orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP_{status}"
    return code if isinstance(code, str) else f"HTTP_{status}"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in MUTATING
            or not scope["path"].startswith("/api")
        ):
            await self.app(scope, receive, send)
            return
        audit = self.state.services.audit
        client = scope.get("client")
        draft = AuditDraft(
            method=scope["method"],
            address=clean(client[0], 64) if client else None,
            request_id=request_id_var.get(),
            scope=scope,
        )

        async def stage(db: Any) -> None:
            await audit.stage_ok(db, draft)

        draft_token = current_draft.set(draft)
        work_token = request_work.set(stage)
        held: list[Message] = []
        started = False

        async def send_audited(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if served_elsewhere(scope):
                    await send(message)  # the instance that served the call audited it
                    return
                if message["status"] >= 400:
                    held.append(message)  # the error code is in the body
                    return
                if not draft.written:
                    await audit.write_alone(draft, OK, message["status"])
            elif held:
                start = held.pop()
                status = start["status"]
                await audit.write_alone(
                    draft, _error_code(message.get("body", b""), status), status
                )
                await send(start)
            await send(message)

        try:
            await self.app(scope, _reading_fields(receive, draft), send_audited)
        except Exception as exc:
            if not started or held:
                status, code = unexpected_outcome(exc)
                await audit.write_alone(draft, code, status)
            raise
        finally:
            draft.closed = True
            request_work.reset(work_token)
            current_draft.reset(draft_token)


def _reading_fields(receive: Receive, draft: AuditDraft) -> Receive:
    """Pass the body through, noting the names of its JSON fields (never values)."""
    headers = dict(draft.scope.get("headers") or [])
    if not headers.get(b"content-type", b"").startswith(b"application/json"):
        return receive
    chunks: list[bytes] = []
    size = 0

    async def wrapped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request" and size <= _FIELDS_BODY_LIMIT:
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > _FIELDS_BODY_LIMIT:
                chunks.clear()  # too long to read for names: nothing more is kept
            elif not message.get("more_body", False):
                try:
                    body = orjson.loads(b"".join(chunks))
                except orjson.JSONDecodeError:
                    body = None
                draft.fields = field_names(draft.route, body)
                chunks.clear()
        return message

    return wrapped
