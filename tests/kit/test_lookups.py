"""Names a client chose are looked up without a thread: the event loop's default thread
pool (a handful of threads, shared with file work) is never used for them, so names
whose DNS servers never answer cannot hold it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from openwa.errors import ValidationFailed, WebhookUrlForbidden
from openwa.kit.addresses import check_url, guarded_connector


class NoThreads(ThreadPoolExecutor):
    """A default pool that fails whatever is handed to it."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError(f"the default thread pool was used for {fn!r}")


@pytest.fixture
async def no_default_threads() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    pool = NoThreads(max_workers=1)
    loop.set_default_executor(pool)
    yield
    loop.set_default_executor(ThreadPoolExecutor())
    pool.shutdown()


async def test_a_webhook_url_by_name_is_checked_without_a_thread(no_default_threads: Any) -> None:
    with pytest.raises(WebhookUrlForbidden):
        await check_url("http://localhost:9/hook", allow_private=False, field="body.url")


async def test_a_post_to_a_name_is_made_without_a_thread(no_default_threads: Any) -> None:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession(connector=guarded_connector(True)) as http,
            http.post(f"http://localhost:{port}/hook", data=b"{}") as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()


async def test_a_name_is_checked_as_it_will_be_connected_to() -> None:
    """Names are IDNA-encoded first, as the HTTP client encodes them to connect
    (`ⓛocalhost` is `localhost`); one the lookup cannot take is a 400, never a 500."""
    fullwidth_l = "\uff2c"  # a fullwidth capital L, which IDNA maps to "l"
    for url in ("http://ⓛocalhost/hook", f"http://{fullwidth_l}ocalhost:8080/hook"):
        with pytest.raises(WebhookUrlForbidden):
            await check_url(url, allow_private=False, field="body.url")
    for url in ("http://i❤.ws/hook", "http://8.8.8.8 x/hook"):
        with pytest.raises(ValidationFailed):
            await check_url(url, allow_private=False, field="body.url")
