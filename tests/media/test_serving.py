"""Media served safely: malformed types refused at the edge, downloads never run as pages.

- a `mimetype` with CR, LF, NUL, spaces or no subtype is a 400 VALIDATION_ERROR, in a
  JSON send, a mock inbound message and a multipart part's Content-Type alike;
- every download carries `X-Content-Type-Options: nosniff` and a sandboxing CSP; HTML,
  SVG and anything else off the inline allow-list is an attachment with a safe name;
  plain images stay inline.
"""

from __future__ import annotations

import pytest

from openwa.api.media_request import download_headers
from tests.fixtures.app import ADMIN_KEY
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    b64,
    data_of,
    download,
    error_of,
    inbound,
    png,
    post_media_json,
    raw_multipart,
    ready_session,
)
from tests.media.support import (
    media_path as send_path,
)

CSP = "sandbox; default-src 'none'"
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
MALFORMED = [
    "text/html\r\nX-Injected: yes",
    "text/html\nSet-Cookie: a=b",
    "image/png\x00",
    "image/png\r",
    "text/html; charset=utf-8\r\n",
    "image /png",
    "image/",
    "png",
    "ima\u0121e/png",
]


async def test_malformed_mimetypes_are_400(media_apps: MediaApps, local_store: MediaStore) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    for mimetype in MALFORMED:
        media = {"base64": b64(HTML), "mimetype": mimetype}
        error = error_of(
            await post_media_json(api, "alice", OUTSIDER, "document", media),
            400,
            "VALIDATION_ERROR",
            mimetype,
        )
        assert any("mimetype" in d["field"] for d in error["details"]), error
        error_of(
            await inbound(api, "alice", **{"from": OUTSIDER, "type": "document"}, media=media),
            400,
            "VALIDATION_ERROR",
            ("inbound", mimetype),
        )
    # A multipart part whose own Content-Type header carries a NUL.
    body, content_type = raw_multipart(
        {"chatId": OUTSIDER, "type": "document"}, b"page.html", HTML, "text/html\x00"
    )
    response = await api.request(
        "POST", send_path("alice"), content=body, headers={"Content-Type": content_type}
    )
    error_of(response, 400, "VALIDATION_ERROR", "multipart")
    assert local_store.objects() == set()

    # Well-formed types, parameters included, are accepted.
    media = {"base64": b64(b"plain words"), "mimetype": 'text/plain; charset="utf-8"'}
    sent = data_of(await post_media_json(api, "alice", OUTSIDER, "document", media), 202)
    assert sent["media"]["mimetype"] == "text/plain"


async def test_downloads_are_never_run_by_a_browser(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")

    async def sent(content: bytes, mimetype: str, type_: str = "document", **extra: str) -> str:
        media = {"base64": b64(content), "mimetype": mimetype, **extra}
        answer = await post_media_json(api, "alice", OUTSIDER, type_, media)
        message_id: str = data_of(answer, 202)["id"]
        return message_id

    html = await sent(HTML, "text/html")
    svg = await sent(SVG, "image/svg+xml", filename='x"\\\r\n.svg')
    image = await sent(png(8, 8), "image/png", "image")

    for message_id, served in ((html, "text/html"), (svg, "image/svg+xml")):
        response = await download(api, "alice", message_id)
        assert response.status_code == 200
        assert response.content in (HTML, SVG)
        assert response.headers["content-type"].split(";")[0] == served
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == CSP
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        assert "\r" not in disposition
        assert "\n" not in disposition
    html_disposition = (await download(api, "alice", html)).headers["content-disposition"]
    assert f'filename="{html}.bin"' in html_disposition

    response = await download(api, "alice", image)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CSP
    assert "content-disposition" not in response.headers

    # A viewer key gets the same headers: they are on the route, not on the role.
    viewer = await api.new_key("viewer")
    response = await download(api, "alice", html, key=viewer)
    assert response.headers["content-disposition"].startswith("attachment")
    assert ADMIN_KEY not in response.text


@pytest.mark.parametrize(
    ("stored", "served", "attachment"),
    [
        ("text/html\r\nX-Injected: yes", "application/octet-stream", True),
        ("image/svg+xml", "image/svg+xml", True),
        ("IMAGE/PNG; x=1", "image/png", False),
        ("", "application/octet-stream", True),
    ],
)
def test_stored_types_are_served_safely(stored: str, served: str, attachment: bool) -> None:
    # Engines report types from the network: whatever was stored, the headers stay whole.
    mimetype, headers = download_headers({"mimetype": stored, "size": 3}, "3EB0ABC")
    assert mimetype == served
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == CSP
    assert ("Content-Disposition" in headers) is attachment
    for value in headers.values():
        assert not set(value) & {"\r", "\n", "\x00"}
