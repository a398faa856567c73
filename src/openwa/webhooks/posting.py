"""One webhook POST on the pooled connections, and what to do when one was dead.

Receivers close idle connections after a few seconds (Node and uvicorn after 5,
gunicorn after 2). A POST that takes such a connection from the pool just as it closes
gets no answer, and the receiver never read it; aiohttp sends a request again on a new
connection only for idempotent methods, never a POST. Left so, that delivery logged a
failed attempt and waited for its retry (`tests/webhooks/test_keepalive.py`). It is sent
once more at once, within what is left of the same timeout: at worst the receiver gets
it twice, which its `webhook-id` lets it tell (deliveries are at least once anyway).
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass

import aiohttp

from openwa import __version__
from openwa.kit.redact import redact_text, redact_url, urls_origin_only

# Of a receiver's answer only the status (and a redirect's `Location`) matters. Its body
# is read to its end so that the connection can carry the next POST, up to this many
# bytes; a longer one closes the connection instead of being read into memory (at
# loopback speed a receiver sends gigabytes within the timeout), and a compressed body is
# never inflated (a small gzip body can stand for gigabytes).
ANSWER_MAX_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024
# How long the body of an answer whose status is in may take to be read (and dropped):
# past it the connection is closed, the status kept. A receiver that answered 200 and
# held its body open used to hold the lane for the whole WEBHOOK_TIMEOUT_S each time.
ANSWER_BODY_S = 1.0


def webhook_client(connector: aiohttp.BaseConnector, timeout_s: float) -> aiohttp.ClientSession:
    """The client deliveries are posted with. No cookie jar: a cookie one receiver sets
    would go along to every webhook of every session on the same host."""
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        # The answer's body is dropped: nothing for the receiver to compress.
        headers={"User-Agent": f"OpenWA/{__version__}", "Accept-Encoding": "identity"},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


@dataclass(frozen=True, slots=True)
class Answered:
    status: int
    location: str | None  # a 3xx answer's `Location` (credentials masked)


def _closed_under_it(exc: BaseException) -> bool:
    """Whether a request failed as one does on a connection closed as it went out: no
    answer at all, or a reset or broken pipe while writing it (aiohttp wraps a write to
    a closing transport in a `ClientOSError` without an errno, its cause the reset)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    if isinstance(exc, aiohttp.ClientConnectorError):  # never connected at all
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionResetError | BrokenPipeError) or (
            isinstance(seen, OSError) and seen.errno in (errno.ECONNRESET, errno.EPIPE)
        ):
            return True
        seen = seen.__cause__
    return False


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> Answered:
    """The receiver's answer, never following a redirect; raises what aiohttp raises
    (`TimeoutError` past `timeout_s`, counted over both sends)."""
    deadline = time.monotonic() + timeout_s
    try:
        return await _send(http, url, body, headers, None)
    except (aiohttp.ClientError, OSError) as exc:
        left = deadline - time.monotonic()
        if not _closed_under_it(exc) or left <= 0:
            raise
    return await _send(http, url, body, headers, aiohttp.ClientTimeout(total=left))


async def _send(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout | None,
) -> Answered:
    # `timeout` None: the session's own (WEBHOOK_TIMEOUT_S), no object made per request.
    async with http.post(
        url, data=body, headers=headers, allow_redirects=False, timeout=timeout or http.timeout
    ) as r:
        location = None
        if 300 <= r.status < 400:
            # Bytes that are not UTF-8 reach us as lone surrogates; kept as U+FFFD.
            raw = r.headers.get("Location", "").encode("utf-8", "surrogateescape")
            location = redact_url(raw.decode("utf-8", "replace"))[:2048] or None
        try:
            async with asyncio.timeout(ANSWER_BODY_S):
                await _read_to_end(r)
        except (aiohttp.ClientError, OSError):  # TimeoutError is an OSError
            # Of the answer only its status counts: a body cut short, or one still
            # coming after ANSWER_BODY_S (or at the timeout), changes nothing of it (it
            # was a failed attempt, retried: the receiver got every event again). Its
            # connection cannot carry the next POST.
            r.close()
        return Answered(r.status, location)


async def _read_to_end(response: aiohttp.ClientResponse) -> None:
    """Read and drop the answer's body; past `ANSWER_MAX_BYTES`, close its connection."""
    seen = 0
    while chunk := await response.content.read(_READ_CHUNK):
        seen += len(chunk)
        if seen > ANSWER_MAX_BYTES:
            response.close()
            return


def failure_text(exc: BaseException) -> str:
    """A failed POST as its delivery log keeps it. Made from the error's fields where
    aiohttp's text quotes the request's whole URL (`ClientResponseError`: an answer it
    could not read), and any URL left cut to its origin: the log is shown to keys that
    may not see the receiver's URL, whose path often is its token."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{type(exc).__name__}: {exc.status}, {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact_text(urls_origin_only(text))[:500]
