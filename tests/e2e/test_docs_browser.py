"""`/docs` renders in a real browser under its Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.browser import CHROMIUM, LISTEN
from tests.fixtures.browser import sync_playwright as browser_api
from tests.fixtures.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]


def test_swagger_ui_renders_without_csp_violations(tmp_path: Path) -> None:
    sync_playwright = browser_api()
    data_dir = tmp_path / "data"
    server = ServerProcess(f"sqlite+aiosqlite:///{data_dir / 'openwa.db'}", data_dir)
    server.start()
    problems: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page()
                page.on(
                    "console",
                    lambda message: (
                        problems.append(message.text) if message.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.add_init_script(LISTEN)
                response = page.goto(server.url + "/docs", wait_until="networkidle")
                assert response is not None
                assert response.status == 200
                assert "default-src 'none'" in response.headers["content-security-policy"]
                # Swagger UI loaded the document from /openapi.json and drew its operations.
                summary = page.locator(
                    ".opblock-get .opblock-summary-path", has_text=re.compile(r"^/api/sessions$")
                ).first
                try:
                    summary.wait_for(state="visible", timeout=15_000)
                except Exception as exc:
                    seen = page.evaluate("window.__violations")
                    text = page.inner_text("body")[:500]
                    raise AssertionError(f"not rendered: {seen} {problems} {text}") from exc
                # Opening an operation renders its schemas (more scripts, styles, icons);
                # "Try it out" calls the API from the page (connect-src), keyless: a 401.
                summary.click()
                page.get_by_role("button", name="Try it out").click()
                page.get_by_role("button", name="Execute").click()
                status = page.locator(".live-responses-table tbody .response-col_status").first
                status.wait_for(state="visible", timeout=10_000)
                assert status.inner_text().strip() == "401"
                page.wait_for_load_state("networkidle")
                violations = page.evaluate("window.__violations")
            finally:
                browser.close()
    finally:
        server.stop()
    assert violations == [], violations
    assert [p for p in problems if "Content Security Policy" in p] == [], problems
    # The keyless "Try it out" call is logged as a failed load; nothing else may be.
    assert [p for p in problems if "status of 401" not in p] == [], problems
