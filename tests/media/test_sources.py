"""Media from a URL: private addresses refused unless allowed, 404s, timeouts, redirects."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from starlette.requests import Request

from openwa.api import media_request
from openwa.errors import ValidationFailed, WebhookUrlForbidden
from openwa.kit import addresses
from openwa.media import ingest
from openwa.media.convert import ConversionLimits, MediaConverter
from openwa.media.ingest import MAX_REDIRECTS
from tests.fixtures.server import free_port
from tests.media.conftest import Loopback, MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    b64,
    data_of,
    error_of,
    inbound,
    png,
    post_media_json,
    ready_session,
)


def small_ingest(
    tmp_path: Path, *, allow_private: bool, fetch_timeout_s: float
) -> ingest.MediaIngest:
    """Media ingestion of up to 1 MiB, its files under `tmp_path`."""
    return ingest.MediaIngest(
        max_bytes=1 << 20,
        fetch_timeout_s=fetch_timeout_s,
        allow_private=allow_private,
        tmp_dir=tmp_path,
        converter=MediaConverter(ConversionLimits(), tmp_path, None),
    )


async def test_private_urls_are_refused_unless_allowed(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(local_store, webhook_allow_private=False)
    await ready_session(api, "alice")
    served = loopback.serve("secret.png", png(), "image/png")
    urls = [
        served,
        served.replace("127.0.0.1", "localhost"),
        f"http://[::1]:{loopback.port}/files/secret.png",
        "http://10.1.2.3/a.png",
        "http://192.168.0.10/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/a.png",
        "http://2130706433/a.png",  # 127.0.0.1 as a number
    ]
    for url in urls:
        response = await post_media_json(api, "alice", OUTSIDER, "image", {"url": url})
        error_of(response, 400, "WEBHOOK_URL_FORBIDDEN", url)
        response = await inbound(
            api, "alice", **{"from": OUTSIDER, "type": "image"}, media={"url": url}
        )
        error_of(response, 400, "WEBHOOK_URL_FORBIDDEN", ("inbound", url))
    # Nothing was fetched, nothing stored.
    assert loopback.fetched == []
    assert local_store.objects() == set()


async def test_non_http_urls_are_a_validation_error(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    for url in (
        "file:///etc/passwd",
        "ftp://127.0.0.1/a.png",
        "gopher://x/",
        "not a url",
        "http://",
    ):
        response = await post_media_json(api, "alice", OUTSIDER, "image", {"url": url})
        error_of(response, 400, "VALIDATION_ERROR", url)


async def test_url_answering_404_is_400(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    url = f"{loopback.base}/files/missing.png"
    response = await post_media_json(api, "alice", OUTSIDER, "image", {"url": url})
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert "404" in str(error["details"]), error
    assert loopback.fetched == ["missing.png"]
    assert local_store.objects() == set()


def redirects(loopback: Loopback, target: str, hops: int) -> str:
    """A URL that reaches `target` after `hops` redirects."""
    url = target
    for _ in range(hops):
        url = f"{loopback.base}/redirect?to={quote(url, safe='')}"
    return url


async def test_redirects_are_followed_up_to_the_limit(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    image = png()
    target = loopback.serve("target.png", image, "image/png")
    # CDNs and signed links redirect: up to MAX_REDIRECTS hops are followed.
    url = redirects(loopback, target, MAX_REDIRECTS)
    sent = data_of(await post_media_json(api, "alice", OUTSIDER, "image", {"url": url}), 202)
    assert sent["media"]["size"] == len(image)
    assert loopback.fetched == ["redirect"] * MAX_REDIRECTS + ["target.png"]
    # One more is refused, and the target is not fetched.
    loopback.fetched.clear()
    url = redirects(loopback, target, MAX_REDIRECTS + 1)
    response = await post_media_json(api, "alice", OUTSIDER, "image", {"url": url})
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert "redirect" in error["message"], error
    assert "target.png" not in loopback.fetched
    # A redirect to something that is not http(s) is not followed either.
    loopback.fetched.clear()
    url = redirects(loopback, "file:///etc/passwd", 1)
    response = await post_media_json(api, "alice", OUTSIDER, "image", {"url": url})
    error_of(response, 400, "VALIDATION_ERROR")


async def test_a_redirect_to_a_name_of_forbidden_addresses_is_forbidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`localhost` is two forbidden addresses (::1 and 127.0.0.1). Refused on connect,
    one by one, they came back from aiohttp as one plain OSError, answered 400
    VALIDATION_ERROR; the hop is refused at its lookup, as WEBHOOK_URL_FORBIDDEN."""
    public = "127.0.0.2"  # stands for a public server: the only address allowed here
    monkeypatch.setattr(addresses, "is_forbidden", lambda address: str(address) != public)
    port = free_port()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{port}/secret.png")

    app = web.Application()
    app.router.add_get("/go", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, public, port).start()
    media = small_ingest(tmp_path, allow_private=False, fetch_timeout_s=5.0)
    try:
        with pytest.raises(WebhookUrlForbidden) as refused:
            await media.from_url("image", f"http://{public}:{port}/go", None)
        assert "localhost" in refused.value.details["reason"], refused.value.details
    finally:
        await runner.cleanup()
    assert list(tmp_path.iterdir()) == []


async def test_url_slower_than_the_fetch_timeout_is_400(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    # Long enough that a fast answer on a loaded machine is in time, far below the
    # slow answer's 30 s.
    api = await media_apps.start(local_store, media_fetch_timeout_s=2.0)
    await ready_session(api, "alice")
    loopback.slow_s = 30.0
    loopback.files["slow.png"] = (png(), "image/png")
    started = time.monotonic()
    response = await post_media_json(
        api, "alice", OUTSIDER, "image", {"url": loopback.slow_url("slow.png")}
    )
    elapsed = time.monotonic() - started
    error_of(response, 400, "VALIDATION_ERROR")
    assert elapsed < 15, elapsed  # the server gave up after about 2 s, not the 30 s answer
    assert loopback.fetched == ["slow.png"]
    assert local_store.objects() == set()
    # The same server still serves fast URLs afterwards.
    image = png()
    url = loopback.serve("fast.png", image, "image/png")
    sent = data_of(await post_media_json(api, "alice", OUTSIDER, "image", {"url": url}), 202)
    assert sent["media"]["size"] == len(image)


async def test_media_source_must_be_exactly_one(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    image = png()
    for media in (
        {},
        {"url": "http://example.com/a.png", "base64": b64(image), "mimetype": "image/png"},
        {"base64": "not base64 !!!", "mimetype": "image/png"},
        {"base64": ""},
    ):
        response = await post_media_json(api, "alice", OUTSIDER, "image", media)
        error_of(response, 400, "VALIDATION_ERROR", media)


def _decoded(text: str) -> bytes:
    """What the spool receives, slice by slice."""
    return b"".join(ingest._decode_slice(piece) for piece in ingest._base64_slices(text))


def test_base64_is_decoded_a_slice_at_a_time_as_one_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slices of a body (so that the event loop runs between them) decode to what the
    whole does, and refuse what the whole refuses: padding before the end."""
    monkeypatch.setattr(ingest, "_DECODE_SLICE", 8)
    raw = bytes(range(256)) * 3 + b"xy"  # ends in padding
    text = base64.b64encode(raw).decode()
    assert _decoded(text) == raw
    assert _decoded("data:application/octet-stream;base64," + text) == raw
    for bad in ("QQ==QUJDQUJD", "QUJD!UJDQUJD", "QUJDQUJDQ"):
        with pytest.raises((binascii.Error, ValueError)):
            base64.b64decode(bad, validate=True)  # refused whole ...
        with pytest.raises((binascii.Error, ValueError)):
            _decoded(bad)  # ... and in slices


async def test_large_json_bodies_are_read_a_few_at_a_time(tmp_path: Path) -> None:
    """A JSON body over the threshold (or of no stated length) waits for a permit before
    it is read; small ones never wait."""
    media = small_ingest(tmp_path, allow_private=True, fetch_timeout_s=1.0)
    large = str(ingest._LARGE_JSON_BODY + 1)
    held = [media.reading_json(length) for length in (large, None)]
    for permit in held:
        await permit.__aenter__()
    entered = asyncio.Event()

    async def third() -> None:
        async with media.reading_json(large):
            entered.set()

    waiting = asyncio.create_task(third())
    async with media.reading_json("100"):  # a small body goes through meanwhile
        pass
    for _ in range(20):
        await asyncio.sleep(0)
    assert not entered.is_set()
    await held[0].__aexit__(None, None, None)
    await waiting
    assert entered.is_set()
    await held[1].__aexit__(None, None, None)


async def test_a_json_body_that_stops_arriving_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that starts a JSON media body and then sends nothing is answered (400)
    instead of holding its permit for as long as it likes."""
    monkeypatch.setattr(media_request, "_BODY_IDLE_S", 0.05)
    stalled = asyncio.Event()

    async def receive() -> dict[str, object]:
        if not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b'{"chatId": "+62', "more_body": True}
        await asyncio.Event().wait()  # never more
        raise AssertionError("unreachable")

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(ValidationFailed) as refused:
        await media_request._parse_json(request)
    assert refused.value.details == [{"field": "body", "message": "nothing received for 0.05s"}]
