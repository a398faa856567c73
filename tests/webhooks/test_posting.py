"""Which failed POSTs are sent again at once (`webhooks/posting.py`): those that died on
a connection closed as they went out, never those that did not connect or timed out;
and what is read of a receiver's answer: never more than a cap, never inflated."""

from __future__ import annotations

import asyncio
import errno
import time
import tracemalloc
import zlib

import aiohttp
from aiohttp.client_reqrep import ConnectionKey

from openwa.webhooks import posting
from openwa.webhooks.posting import _closed_under_it
from tests.webhooks.support import read_request


def _wrapped(cause: BaseException) -> aiohttp.ClientOSError:
    # As aiohttp raises a write to a closing transport: no errno of its own.
    wrapper = aiohttp.ClientOSError("Cannot write to closing transport")
    wrapper.__cause__ = cause
    return wrapper


def test_a_connection_closed_under_the_request_is_sent_again() -> None:
    assert _closed_under_it(aiohttp.ServerDisconnectedError())
    assert _closed_under_it(aiohttp.ClientOSError(errno.ECONNRESET, "reset"))
    assert _closed_under_it(aiohttp.ClientOSError(errno.EPIPE, "broken pipe"))
    assert _closed_under_it(_wrapped(ConnectionResetError("closing transport")))


def test_other_failures_are_not() -> None:
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(errno.ECONNREFUSED, "no"))
    assert not _closed_under_it(refused)
    assert not _closed_under_it(TimeoutError())
    assert not _closed_under_it(aiohttp.ClientOSError(errno.ENETUNREACH, "unreachable"))
    assert not _closed_under_it(aiohttp.ClientPayloadError("bad body"))


class AnsweringReceiver:
    """A loopback receiver whose answer depends on the path: `/endless` streams a body
    that never ends, `/bomb` a small gzip body that inflates to 64 MiB, `/cookie` sets a
    cookie, `/cut` and `/stall` answer 200 with a body cut short (closed, or held open),
    `/small` "ok"; it counts the connections made to it and the requests carrying a
    cookie."""

    def __init__(self) -> None:
        self.connections = 0
        self.cookies = 0  # requests that carried a cookie
        self.answered_short = 0  # requests answered 200 with a body cut short
        self.heads: list[bytes] = []  # each request's head, lower-case
        self.url = ""
        self._server: asyncio.Server | None = None
        self._bomb = b""

    async def __aenter__(self) -> AnsweringReceiver:
        packer = zlib.compressobj(wbits=31)  # gzip
        zeros = bytes(1 << 20)
        self._bomb = b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await read_request(reader)
                path = head.split(b" ", 2)[1]
                self.cookies += head.lower().count(b"\r\ncookie:")
                self.heads.append(head.lower())
                if path == b"/endless":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    chunk = b"x" * 65536
                    while True:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                elif path == b"/cookie":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\n"
                        b"Content-Length: 0\r\n\r\n"
                    )
                elif path in (b"/cut", b"/stall"):
                    # A 200 whose body ends short: closed, or held open past the timeout.
                    self.answered_short += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
                    await writer.drain()
                    if path == b"/cut":
                        return
                    await asyncio.sleep(30)
                elif path == b"/bomb":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(self._bomb), self._bomb)
                    )
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _post_to(url: str, timeout_s: float = 30.0) -> posting.Answered:
    async with posting.webhook_client(aiohttp.TCPConnector(), timeout_s) as http:
        return await posting.post(http, url, b"{}", {"Content-Type": "application/json"}, timeout_s)


async def test_a_200_whose_body_ends_short_is_a_success_sent_once() -> None:
    """Of the answer only its status counts: a 200 whose body is cut short (closed), or
    still coming at the timeout, was a failed attempt (retried, and on a closed
    connection sent again at once), so the receiver got the event again and again."""
    async with AnsweringReceiver() as receiver:
        assert (await _post_to(f"{receiver.url}/cut")).status == 200
        assert (await _post_to(f"{receiver.url}/stall", timeout_s=1.0)).status == 200
        # The body is given ANSWER_BODY_S, not the whole timeout.
        started = time.monotonic()
        assert (await _post_to(f"{receiver.url}/stall", timeout_s=60.0)).status == 200
        assert time.monotonic() - started < 30.0
        assert receiver.answered_short == 3


async def test_an_answer_without_end_is_cut_off_not_read_until_the_timeout() -> None:
    async with AnsweringReceiver() as receiver:
        answered = await _post_to(f"{receiver.url}/endless")
    assert answered.status == 200


async def test_a_compressed_answer_is_not_inflated() -> None:
    async with AnsweringReceiver() as receiver:
        tracemalloc.start()
        try:
            answered = await _post_to(f"{receiver.url}/bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answered.status == 200
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB held for a 64 MiB bomb"


async def test_a_short_answer_keeps_its_connection_for_the_next_post() -> None:
    async with (
        AnsweringReceiver() as receiver,
        posting.webhook_client(aiohttp.TCPConnector(), 30.0) as http,
    ):
        for _ in range(3):
            answered = await posting.post(http, f"{receiver.url}/small", b"{}", {}, 30.0)
            assert answered.status == 200
        assert receiver.connections == 1
        assert all(b"\r\naccept-encoding: identity\r\n" in head for head in receiver.heads)


async def test_a_cookie_a_receiver_sets_is_not_sent_back() -> None:
    async with (
        AnsweringReceiver() as receiver,
        posting.webhook_client(aiohttp.TCPConnector(), 30.0) as http,
    ):
        # By name: aiohttp's own jar would not keep a cookie of a bare IP address anyway.
        named = receiver.url.replace("127.0.0.1", "localhost")
        await posting.post(http, f"{named}/cookie", b"{}", {}, 30.0)
        await posting.post(http, f"{named}/small", b"{}", {}, 30.0)
        assert receiver.cookies == 0
