"""How long the dashboard's pages take to load with 100 sessions (and with 1, as the
baseline of the same run).

Starts the real server (mock engine, SQLite in a temporary directory), makes the
sessions (linked at once: MOCK_AUTH_DELAY_MS=0) and a few messages in the first one, then
drives Debian's chromium with Playwright: signs in once, then opens each page by its URL
in a fresh tab, `--runs` times.

"Loaded" is the last change to the page's DOM before it stays still for `QUIET_MS`,
counted from the navigation's start (`performance.now()` in the page; a
MutationObserver notes each change). That covers the page's own fetches and rendering,
whatever its markup, without naming elements; the pages' live connections (WebSocket,
the event stream) stay open and are not waited for. Reported: the median per page, and
the same with one session.

Usage: .venv/bin/python benchmarks/dashboard.py [--sessions 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench_server import KEY, free_port, serve, stop, wait_healthy

QUIET_MS = 500
PAGES = (
    "#/sessions",
    "#/sessions/{first}",
    "#/webhooks",
    "#/events",
    "#/keys",
    "#/audit",
    "#/health",
)

WATCH = """
window.__lastChange = 0;
new MutationObserver(() => { window.__lastChange = performance.now(); })
  .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""


async def prepare(base: str, sessions: int) -> str:
    """`sessions` linked mock sessions and a few messages in the first; its name."""
    headers = {"X-API-Key": KEY}
    async with aiohttp.ClientSession(headers=headers) as http:
        names = [f"bench-{i:03d}" for i in range(sessions)]
        for name in names:
            async with http.post(base + "/api/sessions", json={"name": name}) as response:
                assert response.status == 201, await response.text()
        deadline = time.monotonic() + 120
        while True:
            async with http.get(base + "/api/sessions", params={"limit": 100}) as response:
                body = await response.json()
            ready = [s for s in body["data"] if s["status"] == "ready"]
            if len(ready) >= min(sessions, 100):
                break
            assert time.monotonic() < deadline, "sessions did not link"
            await asyncio.sleep(0.2)
        first = body["data"][0]
        if sessions > 1:
            to = body["data"][1]["phoneNumber"]
            for i in range(20):
                url = f"{base}/api/sessions/{first['name']}/messages/text"
                async with http.post(url, json={"chatId": to, "text": f"hello {i}"}) as response:
                    assert response.status == 202, await response.text()
        return str(first["name"])


def load_times(base: str, first: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(WATCH)
            page = context.new_page()
            page.goto(base + "/dashboard/")
            page.get_by_label("API key").fill(KEY)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/dashboard/#/sessions")
            for _ in range(runs):
                for hash_path in PAGES:
                    path = hash_path.format(first=first)
                    tab = context.new_page()  # the key is kept per tab: copy it over
                    tab.goto(base + "/dashboard/")
                    tab.evaluate("([k, v]) => sessionStorage.setItem(k, v)", _stored_key(page))
                    tab.goto(base + "/dashboard/" + path)
                    tab.reload()
                    times.setdefault(hash_path, []).append(_settled(tab))
                    tab.close()
        finally:
            browser.close()
    return times


def _stored_key(page: Any) -> list[str]:
    entries = page.evaluate("Object.entries(sessionStorage)")
    assert entries, "the dashboard keeps the key in sessionStorage"
    return list(entries[0])


def _settled(tab: Any) -> float:
    """Milliseconds from the navigation's start to the last change before a quiet spell."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now, last = tab.evaluate("[performance.now(), window.__lastChange]")
        if last > 0 and now - last >= QUIET_MS:
            return float(last)
        tab.wait_for_timeout(50)
    raise RuntimeError("the page never settled")


async def measure(sessions: int, runs: int) -> dict[str, list[float]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="openwa-bench-dash-") as directory:
        log_path = Path(directory) / "server.log"
        with log_path.open("wb") as log:
            env = {"DATA_DIR": directory, "MOCK_AUTH_DELAY_MS": "0", "MAX_SESSIONS": "1000"}
            server = serve(port, env, log)
            try:
                async with aiohttp.ClientSession() as http:
                    await wait_healthy(http, base, server, log_path)
                first = await prepare(base, sessions)
                return await asyncio.to_thread(load_times, base, first, runs)
            finally:
                stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    baseline = asyncio.run(measure(1, args.runs))
    loaded = asyncio.run(measure(args.sessions, args.runs))
    print(f"| page | 1 session (ms) | {args.sessions} sessions (ms) |")
    print("| --- | --- | --- |")
    for page in PAGES:
        one, many = statistics.median(baseline[page]), statistics.median(loaded[page])
        print(f"| `{page}` | {one:.0f} | {many:.0f} |")


if __name__ == "__main__":
    main()
