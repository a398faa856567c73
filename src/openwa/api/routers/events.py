"""The event log: catch-up pages and Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from openwa.api.deps import PrincipalDep, ServicesDep
from openwa.api.envelope import Envelope, ok
from openwa.api.responses import errors
from openwa.api.routing import api_router
from openwa.errors import EventNotFound, ValidationFailed
from openwa.events.schemas import EventPage
from openwa.events.service import logged
from openwa.events.streams import LiveStream
from openwa.kit import wire_json
from openwa.kit.schema import INT64_MAX

router = api_router("/api/events", ["events"])

After = Annotated[
    int,
    Query(ge=0, le=INT64_MAX, description="Return events after this cursor (0: from the start)"),
]
Sessions = Annotated[
    str | None, Query(max_length=4096, description="Comma-separated session ids or names")
]
Events = Annotated[str | None, Query(max_length=1024, description="Comma-separated event names")]
AfterId = Annotated[
    str | None,
    Query(
        alias="afterId",
        min_length=1,
        max_length=40,
        description="Return events after the one with this id (the `id` a WebSocket frame or a"
        " webhook carried); instead of `after`. 404 NOT_FOUND once it is no longer in the log",
    ),
]


class _LiveStreamResponse(StreamingResponse):
    """An SSE response that gives its stream slot back however it ends: a client gone
    before the first frame never starts the body's generator, whose `finally` then
    would not run."""

    def __init__(self, content: AsyncIterator[bytes], live: LiveStream) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._live.release()


def _resume_cursor(last_event_id: str) -> int:
    """The cursor a client resumes after: one we handed out (`id:`), so ASCII digits
    within int64; anything else is refused now rather than failing mid-stream."""
    if last_event_id.isascii() and last_event_id.isdigit():
        cursor = int(last_event_id)
        if cursor <= INT64_MAX:
            return cursor
    raise ValidationFailed(
        details=[
            {
                "field": "header.Last-Event-ID",
                "message": "must be a cursor this server sent (digits, at most 2^63-1)",
                "type": "value_error",
            }
        ]
    )


def _split(value: str | None) -> list[str] | None:
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    return items or None


@router.get("", responses=errors(EventNotFound))
async def list_events(
    principal: PrincipalDep,
    services: ServicesDep,
    after: After = 0,
    sessions: Sessions = None,
    events: Events = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: AfterId = None,
) -> Envelope[EventPage]:
    """Events after the cursor (or the event `afterId`), oldest first; continue from
    `nextCursor`."""
    visible = await services.event_reader.visible_sessions(principal, _split(sessions))
    if after_id is not None:
        after = await services.event_reader.cursor_of(after_id, principal)
    return ok(await services.event_reader.page(after, limit, visible, _split(events)))


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE; `id:` is the cursor"},
        **errors(EventNotFound),
    },
)
async def stream_events(
    principal: PrincipalDep,
    services: ServicesDep,
    after: After = 0,
    sessions: Sessions = None,
    events: Events = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
    after_id: AfterId = None,
) -> StreamingResponse:
    """The same events as Server-Sent Events; resumes after the `Last-Event-ID` header.

    Ends when the key is deleted, changed or expires; over `STREAMS_PER_KEY` or `MAX_STREAMS`, 429.
    """
    visible = await services.event_reader.visible_sessions(principal, _split(sessions))
    if last_event_id:
        after = _resume_cursor(last_event_id)
    elif after_id is not None:
        after = await services.event_reader.cursor_of(after_id, principal)
    live = await services.streams.open_live(principal.key_id, principal)
    source = services.event_reader.stream(after, visible, _split(events), live=live)

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for event in source:
            if event is None:
                yield b": heartbeat\n\n"
                continue
            data = wire_json.dumps(logged(event).model_dump(by_alias=True))
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (
                event.cursor or 0,
                event.event.encode(),
                data,
            )

    return _LiveStreamResponse(frames(), live)
