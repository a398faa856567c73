"""The dashboard in a real browser: headless Debian chromium, driven by playwright,
against a real server on loopback (mock engine), a webhook receiver on loopback too.

One server and one browser serve the whole module (a context per test): starting each
costs seconds, and the tests share nothing else but the sessions they name.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from openwa.webhooks.signing import sign
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.browser import CHROMIUM, LISTEN
from tests.fixtures.browser import sync_playwright as browser_api
from tests.fixtures.server import ServerProcess
from tests.media.support import b64, png

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE = {"width": 390, "height": 844}
# Long enough to see the QR before the session links by itself; acks far enough apart
# to see `delivered` before `read`.
AUTH_DELAY_MS = "3000"
ACK_DELAY_MS = "600"
# `delivered`, or `read` already: under load the page may render both acks at once
# (statuses only move forward, so `read` means it was delivered).
DELIVERED = re.compile(r"^(delivered|read)$")
TIMEOUT_MS = 15_000


class Receiver:
    """A webhook receiver on loopback: records each delivery; answers 500 when told."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                receiver.bodies.append(json.loads(raw or b"{}"))
                self.send_response(500 if receiver.failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def signed_with(self, secret: str) -> bool:
        """Whether a delivery came signed with `secret` (Standard Webhooks)."""
        return any(
            sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
            in headers["webhook-signature"].split()
            for headers, body in self.received
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("dashboard")
    data_dir = root / "data"
    process = ServerProcess(
        f"sqlite+aiosqlite:///{data_dir / 'openwa.db'}",
        data_dir,
        MOCK_AUTH_DELAY_MS=AUTH_DELAY_MS,
        MOCK_ACK_DELAY_MS=ACK_DELAY_MS,
        WEBHOOK_ALLOW_PRIVATE="true",
        # One attempt: a receiver that answers 500 fails the delivery at once (replayable).
        WEBHOOK_MAX_ATTEMPTS="1",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = browser_api()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Tab:
    """A page in a fresh browser context, watching the console and the policy."""

    def __init__(self, browser: Any, base: str, viewport: dict[str, int] | None = None) -> None:
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.add_init_script(LISTEN)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        # A QR read that loses the race to the link (the session left `qr_ready` between
        # the status and the read, on a loaded machine) is refused with 409, and chromium
        # logs every refused load; the page ignores it, as the next status says it all.
        url = (message.location or {}).get("url", "")
        if "status of 409" in message.text and url.endswith("/qr"):
            return
        self.problems.append(message.text)

    def open(self, hash_path: str = "") -> None:
        self.page.goto(f"{self.base}/dashboard/{hash_path}")

    def sign_in(self, key: str) -> None:
        self.open()
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def check_clean(self, allowed: tuple[str, ...] = ()) -> None:
        violations = self.page.evaluate("window.__violations")
        assert violations == [], violations
        unexpected = [p for p in self.problems if not any(a in p for a in allowed)]
        assert unexpected == [], unexpected


@pytest.fixture
def tab(browser: Any, server: ServerProcess) -> Iterator[Tab]:
    opened = Tab(browser, server.url)
    yield opened
    try:
        opened.check_clean()
    finally:
        opened.context.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    # Two cores shared with other work: the default 5 s is short for a live update.
    expect.set_options(timeout=TIMEOUT_MS)
    return expect


def _ready_session(api: httpx.Client, name: str) -> dict[str, Any]:
    """A mock session made through the API, linked (it links by itself)."""
    response = api.post("/api/sessions", json={"name": name, "engine": "mock"})
    assert response.status_code == 201, response.text
    response = api.post(f"/api/sessions/{name}/mock/scan")
    assert response.status_code in (200, 202), response.text
    for _ in range(200):
        session: dict[str, Any] = api.get(f"/api/sessions/{name}").json()["data"]
        if session["status"] == "ready":
            return session
        threading.Event().wait(0.05)
    raise AssertionError(f"{name} never became ready: {session}")


def _wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A short silent PCM WAV, something a browser plays."""
    samples = b"\x00\x00" * int(seconds * rate)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(samples),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(samples),
    )
    return header + samples


def _wait_for(check: Callable[[], bool], seconds: float = TIMEOUT_MS / 1000) -> bool:
    """Whether `check` comes true within `seconds` (things outside the page)."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        threading.Event().wait(0.05)
    return check()


def _new_session_form(tab: Tab, name: str) -> Any:
    """Signed in as the admin, the create form filled with a mock session's name."""
    tab.sign_in(ADMIN_KEY)
    form = tab.page.locator("#create-session")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Engine").select_option("mock")
    return form


def _session_flow(tab: Tab, name: str) -> None:
    """Sign in, create a mock session, see its QR, then `ready`, without a reload."""
    expect = _expect()
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    expect(page.locator("#role")).to_have_attribute("data-role", "admin")
    form = page.locator("#create-session")
    form.get_by_label("Name").fill(name)
    expect(form.get_by_label("Engine").locator("option[value=mock]")).to_have_count(1)
    form.get_by_label("Engine").select_option("mock")
    form.get_by_label("Metadata").fill("team=sales")
    form.get_by_role("button", name="Create session").click()
    card = page.locator("article.session", has=page.get_by_role("link", name=name, exact=True))
    expect(card.get_by_role("img", name=f"QR code to link {name}")).to_be_visible()
    src = card.get_by_role("img").get_attribute("src")
    assert src is not None
    assert src.startswith("data:image/")
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.get_by_role("img")).to_have_count(0)
    expect(card).to_contain_text("team=sales")
    card.get_by_text("Status history").click()
    expect(card.locator(".history li").last).to_contain_text("ready")


def test_a_wrong_key_gets_a_clear_message(tab: Tab) -> None:
    expect = _expect()
    # By keyboard alone: the key field has the focus, Enter signs in.
    tab.open()
    expect(tab.page.get_by_label("API key")).to_be_focused()
    tab.page.keyboard.type("owa_this-key-does-not-exist")
    tab.page.keyboard.press("Enter")
    expect(tab.page.locator("#signin-problem")).to_contain_text("not accepted")
    expect(tab.page.locator("#nav")).to_be_hidden()
    assert tab.page.evaluate("sessionStorage.length") == 0
    # The refused sign-in is logged by chromium as a failed load; nothing else may be.
    tab.problems[:] = [p for p in tab.problems if "status of 401" not in p]


def test_sessions_link_live_and_follow_changes_made_elsewhere(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    sockets: list[str] = []
    tab.page.on("websocket", lambda socket: sockets.append(socket.url))
    _session_flow(tab, "alpha")
    page = tab.page
    # The key stays for the tab only: in sessionStorage, nowhere else.
    assert page.evaluate("sessionStorage.getItem('openwa.dashboard.key')") == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0
    # Created and deleted through the API: the list follows by itself.
    created = api.post("/api/sessions", json={"name": "elsewhere", "autoStart": False})
    assert created.status_code == 201, created.text
    elsewhere = page.locator("article.session", has=page.get_by_role("link", name="elsewhere"))
    expect(elsewhere).to_be_visible()
    assert api.delete("/api/sessions/elsewhere").status_code == 200
    expect(elsewhere).to_have_count(0)
    # A lifecycle action asks first, then the status moves live.
    card = page.locator("article.session", has=page.get_by_role("link", name="alpha", exact=True))
    stop = card.get_by_role("button", name="Stop alpha")
    stop.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Stop alpha?")
    page.keyboard.press("Escape")  # cancelled: nothing happens
    expect(dialog).to_be_hidden()
    expect(card).to_have_attribute("data-status", "ready")
    stop.click()
    dialog.get_by_role("button", name="Stop").click()
    expect(card).to_have_attribute("data-status", "stopped")
    # Live over a WebSocket whose key went as a subprotocol, in no URL (a balancer's
    # access log keeps URLs) [before: `/ws?apiKey=...`].
    assert sockets, "no WebSocket opened"
    assert not [url for url in sockets if "apiKey" in url or ADMIN_KEY in url], sockets


def test_a_text_and_a_file_reach_delivered_and_media_shows(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    sender = _ready_session(api, "sender")
    recipient = _ready_session(api, "recipient")
    assert sender["phoneNumber"]
    assert recipient["phoneNumber"]
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="sender", exact=True).click()
    form = page.locator("#send-form")
    form.get_by_label("To (phone number or chat id)").fill(recipient["phoneNumber"])
    form.get_by_label("Text").fill("Hello from the dashboard")
    form.get_by_role("button", name="Send").click()
    message = page.locator("#message-list li", has_text="Hello from the dashboard")
    expect(message).to_have_count(1)
    expect(message.locator("[data-status]")).to_have_attribute("data-status", DELIVERED)
    # The chat list shows the new chat; its page of messages shows the same message.
    expect(page.locator("#chat-list button.chat")).to_have_count(1)
    # A file, the text its caption, sent as what its type says (multipart upload).
    form.get_by_label("Text").fill("A picture")
    expect(form.get_by_label("Send as")).to_be_hidden()
    form.get_by_label("Attach a file").set_input_files(
        {"name": "dot.png", "mimeType": "image/png", "buffer": png(24, 16)}
    )
    expect(form.get_by_label("Send as")).to_have_value("image")
    form.get_by_role("button", name="Send").click()
    sent = page.locator("#message-list li[data-type=image]")
    expect(sent).to_contain_text("A picture")
    # Fetched with the key into a blob: URL (no key in any URL), and drawn.
    image = sent.locator("img[data-loaded]")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    assert image.evaluate("img => img.complete && img.naturalWidth") == 24
    expect(sent.locator("[data-status]")).to_have_attribute("data-status", DELIVERED)
    # A file that is not shown comes in live, and is downloaded on a click as its bytes.
    notes = b"plain notes, not for showing\n" * 10
    inbound = api.post(
        "/api/sessions/sender/mock/inbound",
        json={
            "from": recipient["phoneNumber"],
            "type": "document",
            "media": {"base64": b64(notes), "mimetype": "text/plain", "filename": "notes.txt"},
        },
    )
    assert inbound.status_code in (200, 201, 202), inbound.text
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"^Download notes\.txt")).click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == notes
    expect(page.locator("#message-list")).to_contain_text("Downloaded notes.txt")
    # Audio plays from a blob: URL on a click (the policy's media-src).
    inbound = api.post(
        "/api/sessions/sender/mock/inbound",
        json={
            "from": recipient["phoneNumber"],
            "type": "audio",
            "media": {"base64": b64(_wav()), "mimetype": "audio/wav"},
        },
    )
    assert inbound.status_code in (200, 201, 202), inbound.text
    page.get_by_role("button", name=re.compile(r"^Play the audio")).click()
    audio = page.locator("#message-list audio")
    expect(audio).to_have_attribute("src", re.compile(r"^blob:"))
    # Its header read (the policy blocking it would leave it at HAVE_NOTHING).
    page.wait_for_function("a => a.readyState >= 1", arg=audio.element_handle())
    # The recipient got both: its own page shows them, received, the picture drawn.
    page.goto(f"{tab.base}/dashboard/#/sessions/recipient")
    page.locator("#chat-list button.chat").first.click()
    expect(page.locator("#message-list li", has_text="Hello from the dashboard")).to_be_visible()
    expect(page.locator("#message-list li.in img[data-loaded]")).to_be_visible()


def test_a_webhook_delivery_is_shown_and_a_failed_one_replayed(
    tab: Tab, api: httpx.Client, receiver: Receiver
) -> None:
    expect = _expect()
    _ready_session(api, "hooked")
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Webhooks of").select_option(label="hooked")
    form = page.locator("#create-webhook")
    form.get_by_label("URL").fill(receiver.url)
    form.get_by_label("Events").fill("webhook.test")
    form.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#webhook-secret")).to_contain_text("whsec_")
    card = page.locator("article.webhook", has_text=receiver.url)
    card.get_by_role("button", name="Send test").click()
    rows = card.locator("tr[data-delivery-id]")
    expect(rows.first).to_have_attribute("data-status", "succeeded")
    assert any(body.get("event") == "webhook.test" for body in receiver.bodies)
    # A receiver that fails: the delivery fails (one attempt here), then is replayed.
    receiver.failing = True
    card.get_by_role("button", name="Send test").click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-status", "failed")
    rows.first.locator("summary").click()
    expect(rows.first.locator("details li")).to_contain_text("500")
    receiver.failing = False
    rows.first.get_by_role("button", name="Replay").click()
    expect(rows.first).to_have_attribute("data-status", "succeeded")


def test_a_session_is_made_with_a_proxy_and_webhooks_whose_secrets_show_once(
    tab: Tab, api: httpx.Client
) -> None:
    expect = _expect()
    form = _new_session_form(tab, "proxied")
    page = tab.page
    form.get_by_label("Proxy").fill("socks5://user:hunter2@93.184.216.34:1080")
    add = form.get_by_role("button", name="Add a webhook")
    for url, events in (
        ("https://example.com/one", "message.received"),
        ("https://example.com/two", "*"),
    ):
        add.click()
        hook = form.locator(".new-webhooks li").last
        expect(hook.get_by_label("URL")).to_be_focused()
        hook.get_by_label("URL").fill(url)
        hook.get_by_label("Events").fill(events)
    form.get_by_role("button", name="Create session").click()
    # Each secret shown once, by the webhook's URL; the form is empty again.
    shown = page.locator("#session-secrets")
    expect(shown.locator("#webhook-secret-1")).to_contain_text("whsec_")
    expect(shown).to_contain_text("https://example.com/two")
    secrets = {shown.locator(f"#webhook-secret-{n}").inner_text() for n in (1, 2)}
    assert len(secrets) == 2
    expect(form.locator(".new-webhooks li")).to_have_count(0)
    # The proxy as the API shows it: its password masked.
    card = page.locator("article.session", has=page.get_by_role("link", name="proxied", exact=True))
    expect(card.locator(".facts")).to_contain_text("socks5://")
    assert "hunter2" not in card.inner_text()
    hooks = api.get("/api/sessions/proxied/webhooks").json()["data"]
    assert sorted((h["url"], h["events"], h["source"]) for h in hooks) == [
        ("https://example.com/one", ["message.received"], "config"),
        ("https://example.com/two", ["*"], "config"),
    ]
    shown.get_by_role("button", name="Done").click()
    expect(shown.locator("code")).to_have_count(0)
    assert not any(secret in page.content() for secret in secrets)


def test_webhooks_are_changed_and_their_secrets_rotated(
    tab: Tab, api: httpx.Client, receiver: Receiver
) -> None:
    """A session's webhook changed field by field; an instance-wide one's secret rotated,
    the new secret shown once and signing the next delivery."""
    expect = _expect()
    _ready_session(api, "changed")
    made = api.post("/api/sessions/changed/webhooks", json={"url": "https://example.com/before"})
    assert made.status_code == 201, made.text
    # Only the test event: every other test's events would be delivered to it too.
    wide = api.post("/api/webhooks", json={"url": receiver.url, "events": ["webhook.test"]})
    assert wide.status_code == 201, wide.text
    wide_id, old_secret = wide.json()["data"]["id"], wide.json()["data"]["secret"]
    try:
        tab.sign_in(ADMIN_KEY)
        page = tab.page
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("Webhooks of").select_option(label="changed")
        card = page.locator("article.webhook", has_text="https://example.com/before")
        card.get_by_role("button", name="Change").click()
        editor = card.locator("form.edit-webhook")
        editor.get_by_label("URL").fill("https://example.com/after")
        editor.get_by_label("Events").fill("message.received, message.ack")
        editor.get_by_label("Headers").fill("Authorization: Bearer abc")
        editor.get_by_label("Active").uncheck()
        editor.get_by_role("button", name="Save").click()
        card = page.locator("article.webhook", has_text="https://example.com/after")
        expect(card).to_have_attribute("data-active", "false")
        expect(card).to_contain_text("message.ack, message.received")
        hook = api.get(f"/api/sessions/changed/webhooks/{made.json()['data']['id']}").json()["data"]
        assert hook["headers"] == {"Authorization": "Bearer abc"}
        assert hook["active"] is False
        # Instance-wide: a new secret, the old one valid no longer.
        page.get_by_label("Webhooks of").select_option(label="Instance-wide (every session)")
        card = page.locator(f"article.webhook[data-webhook-id='{wide_id}']")
        card.get_by_role("button", name="Rotate secret").click()
        rotate = card.locator("form.rotate-secret")
        rotate.get_by_label("The old secret stays valid for").select_option("0")
        rotate.get_by_role("button", name="Rotate").click()
        secret = page.locator("#webhook-secret")
        expect(secret).to_contain_text("whsec_")
        expect(rotate).to_have_count(0)
        new_secret = secret.inner_text().strip()
        assert new_secret != old_secret
        sent = api.post(f"/api/webhooks/{wide_id}/test")
        assert sent.status_code == 202, sent.text
        delivered = _wait_for(lambda: receiver.signed_with(new_secret))
        assert delivered
    finally:
        api.delete(f"/api/webhooks/{wide_id}")


def test_the_cluster_view_shows_each_instance_and_its_sessions(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    running = _ready_session(api, "leased")
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="Cluster").click()
    # One instance here: this one, live, holding the running session's lease.
    summary = page.locator("#cluster-summary")
    expect(summary).to_contain_text("A single instance")
    instances = page.locator("article.instance")
    expect(instances).to_have_count(1)
    expect(instances.first).to_have_attribute("data-this", "true")
    expect(instances.first).to_have_attribute("data-state", "live")
    owned = instances.first.locator(f"li[data-session-id='{running['id']}']")
    expect(owned.get_by_role("link", name="leased")).to_be_visible()
    # Several instances (played by the browser: one server here), read again when a
    # session changes.
    now = "2026-01-01T00:00:00Z"

    def instance(name: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": name,
            "url": f"http://{name}:8080",
            "startedAt": now,
            "lastSeen": now,
            "live": True,
            "draining": False,
            "this": False,
            "maxSessions": 100,
            "running": 0,
            "sessions": [],
            **fields,
        }

    cluster = {
        "clustered": True,
        "leaseSeconds": 15.0,
        "instances": [
            instance(
                "a",
                this=True,
                running=1,
                sessions=[{"id": running["id"], "epoch": 3, "expiresAt": now}],
            ),
            instance("b", draining=True),
            instance("c", live=False),
        ],
        "unowned": ["ses_01JD8X0000000000000000000Z"],
    }
    envelope = {"success": True, "data": cluster, "meta": {"requestId": "req_test"}}
    page.route(
        "**/api/cluster",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
        ),
    )
    assert api.post("/api/sessions", json={"name": "moved", "autoStart": False}).status_code == 201
    expect(instances).to_have_count(3)
    expect(summary).to_contain_text("3 instances, 2 live; leases of 15 s")
    states = [instances.nth(n).get_attribute("data-state") for n in range(3)]
    assert states == ["live", "draining", "gone"]
    expect(instances.first.locator(f"li[data-session-id='{running['id']}']")).to_contain_text(
        "epoch 3"
    )
    expect(page.locator("#unowned")).to_contain_text("ses_01JD8X0000000000000000000Z")


def test_an_event_arrives_live(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    _ready_session(api, "watched")
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="Events").click()
    # Within the filters: the click returns before the page changes, and the sessions
    # page still shown would match "Session" twice.
    filters = page.get_by_role("form", name="Filters")
    filters.get_by_label("Session").select_option(label="watched")
    filters.get_by_label("Types").fill("message.received")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#live-state")).to_have_text("Following live.")
    received = page.locator("#event-list li[data-event='message.received']")
    expect(received).to_have_count(0)
    response = api.post(
        "/api/sessions/watched/mock/inbound", json={"from": "+1 555 0100 777", "text": "live one"}
    )
    assert response.status_code in (200, 201, 202), response.text
    expect(received).to_have_count(1)
    received.locator("summary").click()
    expect(received.locator("pre")).to_contain_text("live one")


def test_a_viewer_sees_no_write_controls(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    _ready_session(api, "viewed")
    hook = api.post(
        "/api/sessions/viewed/webhooks",
        json={"url": "https://example.com/viewed", "headers": {"X-Token": "s3cret"}},
    )
    assert hook.status_code == 201, hook.text
    made = api.post("/api/keys", json={"name": "watcher", "role": "viewer"})
    assert made.status_code == 201, made.text
    tab.sign_in(made.json()["data"]["key"])
    page = tab.page
    expect(page.locator("#role")).to_have_attribute("data-role", "viewer")
    card = page.locator("article.session", has=page.get_by_role("link", name="viewed"))
    expect(card).to_be_visible()
    expect(page.locator("#create-session")).to_have_count(0)
    expect(page.locator("main button")).to_have_count(0)
    card.get_by_role("link", name="viewed").click()
    expect(page.locator("#chats-title")).to_be_visible()
    expect(page.locator("#send-form")).to_have_count(0)
    expect(page.get_by_role("link", name="Cluster")).to_have_count(0)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Webhooks of").select_option(label="viewed")
    # Where it points, without the path (a receiver's token may be in it).
    card = page.locator("article.webhook", has_text="https://example.com/***")
    # The log may be read; nothing may be changed (and header values come masked).
    expect(card.get_by_role("button")).to_have_text(["Deliveries"])
    expect(card).to_contain_text("headers: X-Token")
    expect(card).not_to_contain_text("/viewed")
    expect(page.locator("#create-webhook")).to_have_count(0)


def test_a_scoped_key_sees_its_sessions_only(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    _ready_session(api, "mine")
    _ready_session(api, "theirs")
    made = api.post("/api/keys", json={"name": "one", "role": "operator", "sessions": ["mine"]})
    assert made.status_code == 201, made.text
    tab.sign_in(made.json()["data"]["key"])
    page = tab.page
    expect(page.locator("#role")).to_contain_text("1 session(s)")
    expect(page.get_by_role("link", name="mine", exact=True)).to_be_visible()
    expect(page.locator("article.session")).to_have_count(1)
    # Creating sessions needs a key on every session: not offered; its own are operated.
    expect(page.locator("#create-session")).to_have_count(0)
    expect(page.get_by_role("button", name="Restart mine")).to_be_visible()


def test_an_admin_manages_keys_and_an_operator_sees_no_keys_page(
    tab: Tab, api: httpx.Client
) -> None:
    expect = _expect()
    for name in ("key-a", "key-b"):
        made = api.post("/api/sessions", json={"name": name, "autoStart": False})
        assert made.status_code == 201, made.text
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="Keys").click()
    form = page.locator("#create-key")
    form.get_by_label("Name").fill("made-in-browser")
    form.get_by_label("Role").select_option("operator")
    form.get_by_label("Sessions").fill("key-a, key-b")
    form.get_by_label("Allowed networks").fill("127.0.0.0/8")
    form.get_by_role("button", name="Create key").click()
    # Shown once, with a copy button; the list shows the key without its secret.
    shown = page.locator("#new-key")
    expect(shown).to_contain_text("owa_")
    secret = shown.inner_text().strip()
    expect(page.get_by_role("button", name="Copy key")).to_be_visible()
    card = page.locator("article.key", has_text="made-in-browser")
    expect(card).to_have_attribute("data-role", "operator")
    expect(card).to_contain_text("key-a, key-b")
    expect(card).to_contain_text("127.0.0.0/8")
    assert secret not in page.locator("#key-list").inner_text()
    page.get_by_role("button", name="Done").click()
    expect(shown).to_have_count(0)
    assert secret not in page.content()
    assert page.evaluate("sessionStorage.length") == 1  # the signed-in key only
    # The key works, as an operator, and sees no Keys page (the server refuses it too).
    own = api.get("/api/keys/self", headers={"X-API-Key": secret})
    assert own.json()["data"]["role"] == "operator"
    assert api.get("/api/keys", headers={"X-API-Key": secret}).status_code == 403
    operator = Tab(tab.context.browser, tab.base)
    try:
        operator.sign_in(secret)
        expect(operator.page.locator("#role")).to_have_attribute("data-role", "operator")
        expect(operator.page.get_by_role("link", name="Sessions")).to_be_visible()
        expect(operator.page.get_by_role("link", name="Keys")).to_have_count(0)
        expect(operator.page.get_by_role("link", name="Audit")).to_have_count(0)
        expect(operator.page.get_by_role("link", name="Cluster")).to_have_count(0)
        operator.open("#/keys")
        expect(operator.page.locator("#create-key")).to_have_count(0)
        operator.check_clean()
    finally:
        operator.context.close()
    # Its role changed to viewer, every session, then deleted after a confirmation.
    card.get_by_role("button", name="Change made-in-browser").click()
    editor = card.locator("form.edit-key")
    editor.get_by_label("Role").select_option("viewer")
    editor.get_by_label("Sessions").fill("")
    editor.get_by_role("button", name="Save").click()
    expect(card).to_have_attribute("data-role", "viewer")
    expect(card).to_contain_text("every session")
    assert api.get("/api/keys/self", headers={"X-API-Key": secret}).json()["data"]["role"] == (
        "viewer"
    )
    card.get_by_role("button", name="Delete made-in-browser").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    assert api.get("/api/keys/self", headers={"X-API-Key": secret}).status_code == 401


def test_a_key_scoped_to_a_deleted_session_shows_its_id_not_a_new_namesakes_name(
    tab: Tab, api: httpx.Client
) -> None:
    """The Keys page kept each session's name for its id across visits: after `sales`
    was deleted and made again, a key scoped to the old one showed `sales`, and a change
    of the key sent that name back, giving it the new session."""
    expect = _expect()
    old = api.post("/api/sessions", json={"name": "sales", "autoStart": False})
    assert old.status_code == 201, old.text
    old_id = old.json()["data"]["id"]
    made = api.post("/api/keys", json={"name": "scoped", "role": "operator", "sessions": [old_id]})
    assert made.status_code == 201, made.text
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.get_by_role("link", name="Keys").click()
    card = page.locator("article.key", has_text="scoped")
    expect(card).to_contain_text("sales")
    assert api.delete(f"/api/sessions/{old_id}").status_code == 200
    again = api.post("/api/sessions", json={"name": "sales", "autoStart": False})
    assert again.status_code == 201, again.text
    # Away and back within the page (no reload), as an admin moves about.
    page.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="Keys").click()
    expect(card).to_contain_text(old_id)
    expect(card).not_to_contain_text("sales")


def test_the_audit_log_shows_a_session_made_here(tab: Tab) -> None:
    expect = _expect()
    form = _new_session_form(tab, "logged")
    page = tab.page
    form.get_by_role("button", name="Create session").click()
    expect(page.get_by_role("link", name="logged", exact=True)).to_be_visible()
    page.get_by_role("link", name="Audit").click()
    filters = page.locator("#audit-filters")
    expect(filters.get_by_label("Session").locator("option", has_text="logged")).to_have_count(1)
    filters.get_by_label("Session").select_option(label="logged")
    filters.get_by_label("Key").select_option(label="API_KEY")
    filters.get_by_label("Action").fill("create_session")
    filters.get_by_role("button", name="Apply").click()
    rows = page.locator("#audit-rows tr[data-action]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-action", "create_session")
    expect(rows.first).to_contain_text("POST /api/sessions")
    expect(rows.first).to_contain_text("logged")
    expect(rows.first).to_contain_text("ok (201)")
    # A time after the call: nothing.
    filters.get_by_label("Since").fill("2999-01-01T00:00")
    filters.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#audit-rows")).to_contain_text("No entries.")


def test_health_at_a_glance(tab: Tab) -> None:
    expect = _expect()
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    state = page.locator("#health-state")
    expect(state).to_have_attribute("data-health", "ready")
    expect(state).to_contain_text("ready")
    state.click()
    expect(page.locator("#health-summary")).to_contain_text("The server is ready.")
    rows = page.locator("#health-rows tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#health-rows tr[data-status=up]")).to_have_count(5)
    expect(page.locator("#health-rows tr[data-adapter=engines]")).to_contain_text("up")


def test_a_session_links_by_pairing_code(tab: Tab) -> None:
    expect = _expect()
    form = _new_session_form(tab, "paired")
    page = tab.page
    form.get_by_role("button", name="Create session").click()
    card = page.locator("article.session", has=page.get_by_role("link", name="paired", exact=True))
    # Within the mock's link delay (it would link by itself after it).
    card.get_by_label("Phone number to link paired").fill("+1 555 0100 999")
    card.get_by_role("button", name="Get a pairing code for paired").click()
    expect(card.locator("[data-code]")).to_have_text(re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$"))
    # The mock links as if the code were typed on that phone.
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.locator(".facts")).to_contain_text("15550100999")
    expect(card.locator("[data-code]")).to_have_count(0)


def test_api_errors_are_shown_and_a_429_says_when_to_retry(tab: Tab, api: httpx.Client) -> None:
    expect = _expect()
    _ready_session(api, "taken")
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    form = page.locator("#create-session")
    form.get_by_label("Name").fill("taken")
    form.get_by_role("button", name="Create session").click()
    # The envelope's message and code, as the API sent them.
    expect(page.get_by_role("alert")).to_contain_text("SESSION_EXISTS")
    page.get_by_role("button", name="Dismiss").click()
    # A 429 (played by the browser: the server's limits are generous here).
    envelope = {
        "success": False,
        "error": {"code": "RATE_LIMITED", "message": "Too many requests; try again later"},
        "meta": {"timestamp": "2026-01-01T00:00:00Z", "requestId": "req_test"},
    }
    page.route(
        "**/api/sessions/*/restart",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
            body=json.dumps(envelope),
        ),
    )
    page.get_by_role("button", name="Restart taken").click()
    page.get_by_role("dialog").get_by_role("button", name="Restart").click()
    expect(page.get_by_role("alert")).to_contain_text("Try again in 7 s")
    # Chromium logs both refused calls as failed loads; nothing else may be logged.
    tab.problems[:] = [p for p in tab.problems if not re.search(r"status of (409|429)", p)]


# What sticks out past the viewport's right edge, innermost first (for the message).
WIDEST = """
[...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > innerWidth)
  .slice(-3)
  .map((e) => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)
    + " " + (e.textContent || "").slice(0, 60))
"""


def test_the_session_flow_on_a_phone(browser: Any, server: ServerProcess) -> None:
    expect = _expect()
    phone = Tab(browser, server.url, viewport=PHONE)
    page = phone.page

    def fits() -> None:
        # Nothing wider than the screen: no sideways scrolling, once the page has laid
        # out what it loaded (a clean-clone run once caught a page 530 px wide for a
        # moment, with nothing wider than the screen by the next read).
        deadline = time.monotonic() + 5  # read again (the page's CSP allows no eval)
        while (width := page.evaluate("document.documentElement.scrollWidth")) > PHONE["width"]:
            assert time.monotonic() < deadline, (page.url, width, page.evaluate(WIDEST))
            page.wait_for_timeout(50)

    try:
        _session_flow(phone, "pocket")
        fits()
        page.get_by_role("button", name="Add a webhook").click()
        expect(page.locator(".new-webhooks li")).to_have_count(1)
        fits()
        page.get_by_role("link", name="pocket", exact=True).click()
        expect(page.get_by_label("Attach a file")).to_be_visible()
        fits()
        page.get_by_role("link", name="Cluster").click()
        expect(page.locator("article.instance")).to_have_count(1)
        fits()
        phone.check_clean()
    finally:
        phone.context.close()


def test_each_page_has_no_serious_accessibility_violations(tab: Tab, api: httpx.Client) -> None:
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.skip("axe-playwright-python is not installed (a dev extra)")
    expect = _expect()
    _ready_session(api, "audited")
    hook = api.post("/api/sessions/audited/webhooks", json={"url": "https://example.com/audited"})
    assert hook.status_code == 201, hook.text
    inbound = api.post(
        "/api/sessions/audited/mock/inbound",
        json={
            "from": "+1 555 0100 321",
            "type": "image",
            "text": "a picture",
            "media": {"base64": b64(png()), "mimetype": "image/png"},
        },
    )
    assert inbound.status_code in (200, 201, 202), inbound.text
    axe = Axe()
    page = tab.page
    tab.open()
    found: dict[str, list[str]] = {}

    def audit(name: str) -> None:
        results = axe.run(page)
        found[name] = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])})"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    audit("sign-in")
    tab.sign_in(ADMIN_KEY)
    expect(page.locator("article.session").first).to_be_visible()
    page.get_by_role("button", name="Add a webhook").click()
    audit("sessions")
    page.get_by_role("link", name="audited", exact=True).click()
    page.locator("#chat-list button.chat").first.click()
    expect(page.locator("#message-list img[data-loaded]")).to_be_visible()
    audit("session")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Webhooks of").select_option(label="audited")
    audited = page.locator("article.webhook", has_text="https://example.com/audited")
    audited.get_by_role("button", name="Change").click()
    expect(page.locator("form.edit-webhook")).to_be_visible()
    audit("webhooks")
    page.get_by_role("link", name="Events").click()
    expect(page.locator("#live-state")).to_have_text("Following live.")
    audit("events")
    page.get_by_role("link", name="Keys").click()
    expect(page.locator("article.key").first).to_be_visible()
    audit("keys")
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    audit("audit")
    page.get_by_role("link", name="Cluster").click()
    expect(page.locator("article.instance")).to_have_count(1)
    audit("cluster")
    page.locator("#health-state").click()
    expect(page.locator("#health-rows tr")).to_have_count(5)
    audit("health")
    assert all(not problems for problems in found.values()), {k: v for k, v in found.items() if v}
