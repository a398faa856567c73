"""Any instance answers any route: a live call for a session that another instance runs
is replayed to that instance, and its answer is the client's (docs/cluster-forwarding.md).

Only live engine calls need this (pairing codes, contact checks, groups, mock control,
stop/logout of a session running elsewhere, revokes): they raise `OwnedElsewhere` where
the session is not running. Sends go through the durable outbox, which the owner drains,
so they are never forwarded, and neither are multipart media uploads.

Two halves, installed only with CLUSTER_SECRET:

- `ForwardingMiddleware` (pure ASGI, inside the request id and the body limit) keeps the
  body of each request as it is read (up to MAX_BODY_BYTES), so that a request which
  turns out to need its session's owner can be replayed there; and it checks the proof
  on a request that says it was forwarded. Only a valid proof lets the forwarded client
  address stand in for the socket's peer (a key's `allowedCidrs`, the audit log) and
  spares the request the rate limits it was counted against where it arrived.
- `Forwarder`, the `OwnedElsewhere` handler, replays the request to the owner's
  INSTANCE_URL with a proof and answers with what the owner answered.

The proof is an HMAC-SHA256, keyed with CLUSTER_SECRET, over a timestamp, the method,
the target (path and query), the original client address, the forwarding instance and
a hash of the body, and a nonce: a client that does not know the secret cannot claim
another address or a rate-limit exemption, and a proof seen on the wire is good once, on
any instance (the nonces seen are kept in the shared cache), for at most
PROOF_MAX_AGE_S.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

import aiohttp
import structlog
import yarl
from multidict import CIMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openwa.api.context import request_id_var
from openwa.api.envelope import error_response
from openwa.cache.base import Cache
from openwa.errors import OwnedElsewhere, PayloadTooLarge

log = structlog.get_logger(__name__)

# Request headers of a forwarded call (the proof's parts).
FORWARDED_BY = "x-openwa-forwarded-by"  # the forwarding instance's id
FORWARDED_FOR = "x-openwa-forwarded-for"  # the original client's address ("" for none)
FORWARDED_AT = "x-openwa-forwarded-at"  # Unix seconds when it was forwarded
FORWARDED_NONCE = "x-openwa-forwarded-nonce"  # 32 random hex digits, new for each call
FORWARDED_PROOF = "x-openwa-forwarded-proof"  # "v2=" + hex HMAC-SHA256
# Response header of a forwarded call: the instance that served it.
SERVED_BY = "x-openwa-served-by"

# A proof older (or further ahead of this clock) than this is refused: instances keep
# their clocks in step (NTP), and a forwarded call is sent at once.
PROOF_MAX_AGE_S = 60
_NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
# A nonce is remembered while a proof carrying it could still be fresh (either way).
_NONCE_KEPT_S = 2 * PROOF_MAX_AGE_S + 1
# The whole exchange with the owner: live calls answer in seconds (a pairing code, a
# contact check); one that takes longer has failed there too.
FORWARD_TIMEOUT_S = 30.0
# A client should try again after this long when the owner did not answer: a dead
# owner's sessions are taken over within about a second (its member lock ends with it).
RETRY_AFTER_S = 2

# Scope keys.
_BODY = "openwa.replay_body"  # _Body: present only on requests that may be forwarded
_FORWARDED = "openwa.forwarded_from"  # ForwardedFrom: set only when the proof checked out
_SERVED_ELSEWHERE = "openwa.served_elsewhere"  # the owner's id, once it answered

# Not passed on: hop-by-hop headers (RFC 9110 7.6.1), what the client library sets for
# the new connection itself, a proxy's account of the client (the proof carries the
# client's address now), and forwarding headers a client sent (ours replace them).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "x-request-id",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
}
# Of the owner's answer: what our own edge sets again (its request id, length, date) or
# what no longer holds once aiohttp has decoded the body.
_NOT_RETURNED = _HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "date",
    "server",
    "x-request-id",
}
# Printable ASCII passes as it is; any other byte of a raw target is percent-encoded,
# so the target signed is byte for byte the one the owner receives.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


@dataclass(frozen=True, slots=True)
class ForwardedFrom:
    """A request another instance forwarded here, with a proof that checked out."""

    instance: str


@dataclass(slots=True)
class _Body:
    """The body of a request, as it is read, kept for a replay (bounded)."""

    limit: int
    receive: Receive
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False
    usable: bool = True  # False: over the limit, or the client went away

    def note(self, message: Message) -> None:
        if self.complete:
            return  # what follows the body (a disconnect) is no part of it
        if message["type"] != "http.request":
            self.usable = False
            self.chunks.clear()
            return
        if not self.usable:
            return
        chunk: bytes = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            self.usable = False
            self.chunks.clear()
            return
        if chunk:
            self.chunks.append(chunk)
        self.complete = not message.get("more_body", False)

    async def read(self) -> bytes | None:
        """The whole body (what the route left unread is read now), or None when it
        cannot be replayed."""
        while self.usable and not self.complete:
            await self.receive()  # noted by the tee
        return b"".join(self.chunks) if self.usable else None


def forwarded_from(scope: Scope) -> ForwardedFrom | None:
    """The instance that forwarded this request, when its proof checked out."""
    value = scope.get(_FORWARDED)
    return value if isinstance(value, ForwardedFrom) else None


def served_elsewhere(scope: Scope) -> bool:
    """Whether the answer to this request is another instance's (which audits the call)."""
    return _SERVED_ELSEWHERE in scope


def target_of(scope: Scope) -> str:
    """The request's path and query as the client sent them (ASCII; see _TARGET_SAFE)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string") or b""
    if query:
        raw += b"?" + query
    return quote_from_bytes(raw, safe=_TARGET_SAFE)


def proof(
    secret: bytes,
    *,
    at: str,
    nonce: str,
    method: str,
    target: str,
    client: str,
    instance: str,
    body: bytes,
) -> str:
    """The proof of a forwarded request: `v2=` and the hex HMAC-SHA256 of its parts, one
    a line (none may hold a newline: header values cannot)."""
    message = "\n".join(
        ("v2", at, nonce, method, target, client, instance, hashlib.sha256(body).hexdigest())
    )
    return "v2=" + hmac.new(secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


class ForwardingMiddleware:
    """Keeps each `/api` body for a replay; takes a forwarded request's client address,
    and spares it the rate limits, only on a valid proof."""

    def __init__(self, app: ASGIApp, *, secret: bytes, max_body_bytes: int, seen: Cache) -> None:
        """`seen`: the shared cache, where the nonces of the proofs taken are kept."""
        self.app = app
        self._secret = secret
        self._seen = seen
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        if not any(key.startswith(b"x-openwa-forwarded-") for key, _ in headers):
            body = _Body(self._max_body_bytes, receive)

            async def tee() -> Message:
                message = await receive()
                body.note(message)
                return message

            body.receive = tee
            scope[_BODY] = body
            await self.app(scope, tee, send)
            return
        # Said to be forwarded: never forwarded again, whether the proof holds or not
        # (instances whose secrets or clocks disagree must not pass a call back and forth).
        try:
            read, whole = await _read_all(receive, self._max_body_bytes)
        except HTTPException:  # over the body limit (RequestContextMiddleware's count)
            refusal = error_response(413, PayloadTooLarge.code, PayloadTooLarge.message)
            await refusal(scope, receive, send)
            return
        if whole is not None and (origin := await self._check(scope, headers, whole)) is not None:
            scope[_FORWARDED] = ForwardedFrom(origin[0])
            # As uvicorn does for a trusted proxy's X-Forwarded-For: every reader of the
            # client's address (key networks, the audit log) sees the original client.
            scope["client"] = (origin[1], 0) if origin[1] else None
        await self.app(scope, _replaying(read, receive), send)

    async def _check(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[str, str] | None:
        """(forwarding instance, client address) when the proof checks out and was not
        taken before, else None."""
        by = _header(headers, FORWARDED_BY.encode())
        client = _header(headers, FORWARDED_FOR.encode())
        at = _header(headers, FORWARDED_AT.encode())
        nonce = _header(headers, FORWARDED_NONCE.encode())
        given = _header(headers, FORWARDED_PROOF.encode())
        if by is None or client is None or at is None or given is None:
            return None
        if nonce is None or not _NONCE_RE.fullmatch(nonce):
            # An instance of an earlier version signs without a nonce ("v1=").
            reason = "version" if given.startswith("v1=") else "nonce"
            log.warning("forward_proof_refused", reason=reason, instance=by)
            return None
        try:
            age = time.time() - int(at)
        except ValueError:
            return None
        if abs(age) > PROOF_MAX_AGE_S:
            log.warning("forward_proof_refused", reason="stale", instance=by, age_s=int(age))
            return None
        expected = proof(
            self._secret,
            at=at,
            nonce=nonce,
            method=scope["method"],
            target=target_of(scope),
            client=client,
            instance=by,
            body=body,
        )
        if not hmac.compare_digest(expected.encode(), given.encode()):
            log.warning("forward_proof_refused", reason="mismatch", instance=by)
            return None
        try:
            first = await self._seen.add(f"forwarded-nonce:{nonce}", b"1", _NONCE_KEPT_S)
        except Exception as exc:  # the shared cache is down: a replay could not be told
            log.warning("forward_proof_refused", reason="unchecked", instance=by, error=str(exc))
            return None
        if not first:
            log.warning("forward_proof_refused", reason="replayed", instance=by)
            return None
        return by, client


async def _read_all(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The messages of the body read so far, and the whole body when it ended within
    `limit` (a forwarded body is never larger: see `_Body`)."""
    read: list[Message] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return read, None
        size += len(message.get("body", b""))
        if size > limit:
            return read, None
        if not message.get("more_body", False):
            return read, b"".join(m.get("body", b"") for m in read)


def _replaying(read: list[Message], receive: Receive) -> Receive:
    """The messages already read, then the rest from the client."""
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class Forwarder:
    """Replays a request to the instance that runs its session (the `OwnedElsewhere`
    handler), with one HTTP client for the app, opened and closed with its lifespan."""

    def __init__(
        self, secret: bytes, instance_id: str, *, timeout_s: float = FORWARD_TIMEOUT_S
    ) -> None:
        self._secret = secret
        self._instance_id = instance_id
        self._timeout_s = timeout_s
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            # The owner's cookies are its clients' business, never kept here.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def handle(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OwnedElsewhere)
        body = request.scope.get(_BODY)
        if exc.url is None or self._http is None or not isinstance(body, _Body):
            return _refusal(exc)  # forwarded already, or no owner to forward to
        content = await body.read()
        if content is None:
            return _refusal(exc)
        instance = str((exc.details or {}).get("instance") or "")
        target = target_of(request.scope)
        try:
            status, headers, answer = await self._replay(
                request, exc.url.rstrip("/") + target, target, content
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            timed_out = isinstance(error, TimeoutError)
            log.warning(
                "forward_failed",
                instance=instance,
                error=type(error).__name__,
                timed_out=timed_out,
            )
            return error_response(
                503,
                "NOT_READY",
                "The instance that runs the session did not answer; try again",
                {"instance": instance, "timedOut": timed_out},
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        request.scope[_SERVED_ELSEWHERE] = instance
        response = Response(content=answer, status_code=status)
        response.raw_headers.extend(headers)
        response.raw_headers.append((SERVED_BY.encode(), instance.encode("latin-1", "replace")))
        return response

    async def _replay(
        self, request: Request, url: str, target: str, content: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self._http is not None
        client = request.client.host if request.client is not None else ""

        async def signed(
            attempt: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            """A proof of its own for each attempt: aiohttp sends an idempotent request
            again by itself on a dropped keep-alive connection, and a proof the owner
            may have taken already would be refused as replayed."""
            at, nonce = str(int(time.time())), secrets.token_hex(16)
            attempt.headers[FORWARDED_AT] = at
            attempt.headers[FORWARDED_NONCE] = nonce
            attempt.headers[FORWARDED_PROOF] = proof(
                self._secret,
                at=at,
                nonce=nonce,
                method=request.method,
                target=target,
                client=client,
                instance=self._instance_id,
                body=content,
            )
            return await handler(attempt)

        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name not in _NOT_FORWARDED and not name.startswith("x-openwa-forwarded-")
        ]
        headers += [
            ("x-request-id", request_id_var.get()),
            (FORWARDED_BY, self._instance_id),
            (FORWARDED_FOR, client),
        ]
        async with self._http.request(
            request.method,
            yarl.URL(url, encoded=True),
            headers=CIMultiDict(headers),  # a repeated header stays repeated
            data=content or None,
            allow_redirects=False,
            middlewares=(signed,),
        ) as answer:
            returned = [
                (name.lower(), value)
                for name, value in answer.raw_headers
                if name.lower().decode("latin-1") not in _NOT_RETURNED
            ]
            return answer.status, returned, await answer.read()


def _refusal(exc: OwnedElsewhere) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
