"""`GET /ws`: live events as WebSocket text frames, one envelope a frame.

Fed from the event bus, which the event pump fills from the committed log, so a
client sees what `/api/events` shows, in the same order. A client more than
`WS_MAX_QUEUE` events behind is closed with 1008 and can catch up from the log.
"Behind" counts the events waiting in the server's queue for that socket; what the
kernel's socket buffers already hold (a few MB on loopback) is not seen by the server,
so a client that stops reading is noticed once those are full and its queue overflows
(at once, even while a send to it is stuck), or once a send has been stuck for 10 s.
Pings (every 20 s) are sent by the server (uvicorn's `ws_ping_interval`).
A socket takes a slot of its key's (`STREAMS_PER_KEY`) and the instance's
(`MAX_STREAMS`): over either it is accepted and closed at once with 1013 (try again
later), so the client sees why. So is a handshake over its key's rate limit
(`RATE_LIMIT_*`) or from an address that failed authentication too often, the close
reason saying when to retry. Deleting or changing the key,
or its `expiresAt` passing, closes its sockets with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from fastapi import WebSocket, WebSocketDisconnect

from openwa.api.authentication import authenticate
from openwa.api.deps import raw_api_key
from openwa.api.middleware import nul_in_target
from openwa.api.routing import api_router
from openwa.errors import OpenWAError, RateLimited
from openwa.events.bus import SubscriberOverflow, Subscription
from openwa.events.streams import LiveStream
from openwa.events.types import wanted
from openwa.kit import wire_json
from openwa.services import Services

log = structlog.get_logger(__name__)
router = api_router()
_SEND_TIMEOUT_S = 10.0


def _split(value: str | None) -> set[str] | None:
    items = {item.strip() for item in (value or "").split(",") if item.strip()}
    return items or None


# Browsers cannot set headers on a WebSocket, but they can offer subprotocols: a client
# that offers `openwa` may send its key as a second one, `openwa.key.<key>`, and the
# socket is accepted with `openwa` (never the key). Unlike `?apiKey=`, the key is then in
# no URL, so no balancer's or proxy's access log keeps it.
PROTOCOL = "openwa"
KEY_PROTOCOL_PREFIX = "openwa.key."


def _offered(websocket: WebSocket) -> list[str]:
    return [str(p) for p in websocket.scope.get("subprotocols") or []]


def _key(websocket: WebSocket) -> str | None:
    """From the headers, else a key subprotocol, else the `apiKey` query parameter."""
    if key := raw_api_key(websocket):
        return key
    for offered in _offered(websocket):
        if offered.startswith(KEY_PROTOCOL_PREFIX) and len(offered) > len(KEY_PROTOCOL_PREFIX):
            return offered[len(KEY_PROTOCOL_PREFIX) :]
    return websocket.query_params.get("apiKey")


async def _accept(websocket: WebSocket) -> None:
    """Accepted with `openwa` when the client offered it (a browser fails a socket whose
    offered subprotocols the server answers with none)."""
    await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in _offered(websocket) else None)


def _retry_reason(exc: RateLimited) -> str:
    """The close reason (at most 123 bytes): the error's code and when to come back."""
    retry_after = exc.headers.get("Retry-After")
    reason = f"{exc.code}: {exc.message}"
    if retry_after and "retry after" not in exc.message:
        reason += f"; retry after {retry_after} s"
    return reason[:123]


def _behind(sender: asyncio.Task[None], subscription: Subscription) -> str | None:
    """Why the sender stopped, if it is because the client fell behind."""
    if subscription.overflowed:
        return SubscriberOverflow.__name__
    if not sender.cancelled() and isinstance(sender.exception(), TimeoutError):
        return TimeoutError.__name__
    return None


@router.websocket("/ws")
async def events_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    if nul_in_target(websocket.scope) is not None:
        # As for HTTP (the middleware): a NUL would reach PostgreSQL in a session lookup.
        # Accepted first, so that the client sees why.
        await _accept(websocket)
        await websocket.close(code=1008, reason="VALIDATION_ERROR")
        return
    try:
        principal = await authenticate(websocket, _key(websocket))
        sessions = await services.event_reader.visible_sessions(
            principal, sorted(_split(websocket.query_params.get("sessions")) or []) or None
        )
        names = _split(websocket.query_params.get("events"))
        allowed = set(sessions) if sessions is not None else None
        live = await services.streams.open_live(principal.key_id, principal)
    except RateLimited as exc:
        # Accepted first: a refused handshake reaches a browser as a bare failure.
        await _accept(websocket)
        await websocket.close(code=1013, reason=_retry_reason(exc))
        return
    except OpenWAError as exc:
        await websocket.close(code=1008, reason=exc.code)
        return
    try:
        await _serve(websocket, services, live, allowed, names)
    finally:
        live.release()


async def _serve(
    websocket: WebSocket,
    services: Services,
    live: LiveStream,
    allowed: set[str] | None,
    names: set[str] | None,
) -> None:
    # Subscribed before the accept, so that nothing from the accept on is missed; a
    # client gone by then fails the accept, and its subscription goes with it.
    subscription = services.bus.subscribe(max_queue=services.settings.ws_max_queue)
    filters = names or {"*"}  # no filter takes what `"*"` takes
    try:
        await _accept(websocket)
    except BaseException:
        subscription.close()
        raise

    async def pump() -> None:
        while True:
            event = await subscription.get()
            if allowed is not None and event.session_id not in allowed:
                continue
            if not wanted(filters, event.event):
                continue
            # A send blocks only once the socket's buffers are full: a client that stalls
            # there for long is as far behind as one whose queue overflowed.
            await asyncio.wait_for(
                websocket.send_text(wire_json.dumps(event.envelope()).decode()), _SEND_TIMEOUT_S
            )

    async def drain() -> None:
        # Reading is how a disconnect is noticed. Clients have nothing to send, and what
        # they send anyway (text or binary, a keep-alive of their own) is let go: a
        # binary frame read as text used to end the socket without a close frame.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(pump())
    reader = asyncio.create_task(drain())
    ended = asyncio.create_task(live.revoked.wait())
    # A send stuck on a full socket would otherwise hold a client that is already more
    # than WS_MAX_QUEUE behind until the send times out.
    subscription.on_overflow = sender.cancel
    try:
        done, _ = await asyncio.wait({sender, reader, ended}, return_when=asyncio.FIRST_COMPLETED)
        if ended in done:
            await websocket.close(code=1008, reason=live.reason)
            return
        if sender in done and (reason := _behind(sender, subscription)) is not None:
            # Logged so an operator can tell clients that keep falling behind.
            log.info("ws_closed_behind", reason=reason)
            await websocket.close(code=1008, reason="too far behind; catch up from /api/events")
    except WebSocketDisconnect:
        pass
    finally:
        subscription.close()
        for task in (sender, reader, ended):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
