"""The dashboard: static HTML, CSS and JavaScript modules served from this package.

No build step and no CDN: the files under `static/` are what the browser runs, so the
installed package works offline and `make run` needs no Node.js (docs/dashboard.md).
The page talks to the API like any other client, with the key the user signs in with.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(str(files("openwa.dashboard") / "static"))

# Read by the request middleware for every `/dashboard` response. The page loads only
# its own scripts and styles (no inline script or style); the QR is a `data:` image,
# media previews (images, audio and video players) are `blob:` URLs made from `fetch`;
# the API, the event stream and the WebSocket are on this origin (`'self'` covers
# `ws:`/`wss:` to it in CSP Level 3).
DASHBOARD_CSP = (
    "default-src 'none'; "
    "script-src 'self'; "
    "style-src 'self'; "
    "img-src 'self' data: blob:; "
    "media-src blob:; "
    "connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def install_dashboard(app: FastAPI) -> None:
    """`/dashboard/` serves `static/` (`index.html` for the folder itself)."""

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_root() -> RedirectResponse:
        # Relative asset URLs in the page resolve against the folder, so it ends in `/`.
        return RedirectResponse("/dashboard/", status_code=308)

    app.mount("/dashboard", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
