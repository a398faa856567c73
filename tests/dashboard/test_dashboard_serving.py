"""`/dashboard` is served from the installed package, under its own policy."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from openwa.dashboard import DASHBOARD_CSP, STATIC_DIR
from tests.fixtures.app import Api

ROOT = Path(__file__).resolve().parents[2]


def _policy(header: str) -> dict[str, str]:
    return dict(([*part.strip().split(" ", 1), ""])[:2] for part in header.split(";"))


async def test_the_page_and_its_files_are_served_under_the_dashboard_policy(api: Api) -> None:
    moved = await api.request("GET", "/dashboard", key=None)
    assert moved.status_code == 308
    assert moved.headers["location"] == "/dashboard/"
    page = await api.request("GET", "/dashboard/", key=None)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == DASHBOARD_CSP
    assert page.headers["x-frame-options"] == "DENY"
    # No inline script or style anywhere: the policy allows only the page's own files.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert "<style" not in page.text
    assert " style=" not in page.text
    policy = _policy(DASHBOARD_CSP)
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in DASHBOARD_CSP
    for path in sorted(STATIC_DIR.iterdir()):
        served = await api.request("GET", f"/dashboard/{path.name}", key=None)
        assert served.status_code == 200, path.name
        assert served.content == path.read_bytes()
        assert served.headers["content-security-policy"] == DASHBOARD_CSP
        if path.suffix == ".js":
            assert "javascript" in served.headers["content-type"]
    missing = await api.request("GET", "/dashboard/nothing.js", key=None)
    assert missing.status_code == 404
    # Everything else keeps its own policy.
    other = await api.request("GET", "/health", key=None)
    assert other.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_every_static_file_is_package_data() -> None:
    """A file the globs miss would be absent from the installed package (a wheel)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["openwa"]
    package = ROOT / "src" / "openwa"
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch(relative, glob) for glob in globs), relative
