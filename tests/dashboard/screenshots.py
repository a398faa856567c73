"""`make screenshots`: a PNG of each dashboard page into docs/dashboard/.

Starts a server on the embedded defaults (SQLite and media under a temporary data dir,
in-memory cache) with the mock engine, makes a few mock sessions and some traffic
through the API, signs in with headless Debian chromium and saves each page (desktop,
and the sessions page on a phone). Not a test: `make test` does not run it (pytest
collects `test_*.py` only).

    python -m tests.dashboard.screenshots [output folder]
"""

from __future__ import annotations

import base64
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.browser import CHROMIUM
from tests.fixtures.server import ServerProcess
from tests.media.support import png

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _wait(api: httpx.Client, name: str, status: str) -> dict[str, Any]:
    for _ in range(400):
        session: dict[str, Any] = api.get(f"/api/sessions/{name}").json()["data"]
        if session["status"] == status:
            return session
        time.sleep(0.05)
    raise RuntimeError(f"{name} never became {status}")


def _picture(width: int = 240, height: int = 150) -> bytes:
    """A PNG of a soft gradient: something to preview that is not noise."""
    return png(
        width, height, lambda x, y: bytes((40 + x * 150 // width, 110 + y * 100 // height, 140))
    )


def _traffic(api: httpx.Client, hook_url: str) -> None:
    """Two linked sessions talking, one waiting for its QR, a webhook with deliveries."""
    for name, team in (("sales", "sales"), ("support", "care")):
        made = api.post(
            "/api/sessions",
            json={"name": name, "engine": "mock", "config": {"metadata": {"team": team}}},
        )
        made.raise_for_status()
        api.post(f"/api/sessions/{name}/mock/scan").raise_for_status()
    sales = _wait(api, "sales", "ready")
    support = _wait(api, "support", "ready")
    api.post(
        "/api/sessions/sales/webhooks", json={"url": hook_url, "events": ["message.received"]}
    ).raise_for_status()
    for text in ("Hello! Is my order on its way?", "It left the warehouse this morning."):
        api.post(
            "/api/sessions/support/messages/text",
            json={"chatId": sales["phoneNumber"], "text": text},
        ).raise_for_status()
        time.sleep(0.3)
    api.post(
        "/api/sessions/sales/messages/text",
        json={"chatId": support["phoneNumber"], "text": "Thank you, see you tomorrow."},
    ).raise_for_status()
    api.post(
        "/api/sessions/sales/mock/inbound",
        json={"from": "+1 555 0100 777", "text": "Do you open on Sunday?"},
    ).raise_for_status()
    picture = base64.b64encode(_picture()).decode()
    api.post(
        "/api/sessions/sales/mock/inbound",
        json={
            "from": "+1 555 0100 777",
            "type": "image",
            "text": "This is the shop front.",
            "media": {"base64": picture, "mimetype": "image/png", "filename": "shop.png"},
        },
    ).raise_for_status()
    # Waiting for its QR (the mock links only after MOCK_AUTH_DELAY_MS).
    api.post("/api/sessions", json={"name": "warehouse", "engine": "mock"}).raise_for_status()
    _wait(api, "warehouse", "qr_ready")
    api.post(
        "/api/keys", json={"name": "crm", "role": "operator", "sessions": ["sales"]}
    ).raise_for_status()
    api.post("/api/keys", json={"name": "reports", "role": "viewer"}).raise_for_status()
    time.sleep(1.5)  # acks and webhook deliveries


def _shoot(browser: Any, base: str, out: Path) -> list[Path]:
    saved: list[Path] = []
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page = context.new_page()

    def save(name: str, full: bool = True) -> None:
        page.wait_for_timeout(400)  # live updates and fonts settle
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=full)
        saved.append(path)

    page.goto(f"{base}/dashboard/")
    page.get_by_label("API key").wait_for()
    save("sign-in", full=False)
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.locator("article.session img").first.wait_for()
    save("sessions")
    page.get_by_role("link", name="sales", exact=True).click()
    page.locator("#chat-list button.chat").first.click()
    page.locator("#message-list img[data-loaded]").first.wait_for()
    save("session")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Webhooks of").select_option(label="sales")
    page.get_by_role("button", name="Deliveries").first.click()
    page.locator("tr[data-delivery-id]").first.wait_for()
    save("webhooks")
    page.get_by_role("link", name="Events").click()
    page.get_by_text("Following live.").wait_for()
    save("events", full=False)
    page.get_by_role("link", name="Keys").click()
    page.locator("article.key").first.wait_for()
    save("keys")
    page.get_by_role("link", name="Audit").click()
    page.locator("#audit-rows tr[data-action]").first.wait_for()
    save("audit", full=False)
    page.get_by_role("link", name="Cluster").click()
    page.locator("article.instance").first.wait_for()
    save("cluster", full=False)
    page.locator("#health-state").click()
    page.locator("#health-rows tr").first.wait_for()
    save("health")
    # The phone: the same tab (signed in) at 390 px.
    page.set_viewport_size(PHONE)
    page.get_by_role("link", name="Sessions").click()
    page.locator("article.session").first.wait_for()
    save("sessions-phone", full=False)
    context.close()
    return saved


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="openwa-shots-") as tmp:
        data_dir = Path(tmp) / "data"
        # The embedded default database: SQLite in the data dir.
        server = ServerProcess(
            f"sqlite+aiosqlite:///{data_dir / 'openwa.db'}",
            data_dir,
            MOCK_AUTH_DELAY_MS="600000",
            MOCK_ACK_DELAY_MS="200",
            WEBHOOK_ALLOW_PRIVATE="true",
        )
        server.start()
        try:
            with server.client() as api:
                _traffic(api, f"http://127.0.0.1:{hook.server_address[1]}/hook")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    saved = _shoot(browser, server.url, out)
                finally:
                    browser.close()
        finally:
            server.stop()
            hook.shutdown()
    for path in saved:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "dashboard")
