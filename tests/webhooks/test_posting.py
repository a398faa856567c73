"""Which failed POSTs are sent again at once (`webhooks/posting.py`): those that died on
a connection closed as they went out, never those that did not connect or timed out."""

from __future__ import annotations

import errno

import aiohttp
from aiohttp.client_reqrep import ConnectionKey

from openwa.webhooks.posting import _closed_under_it


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
