"""Swagger UI from the installed `fastapi-offline` package: no CDN, works offline.

`fastapi-offline` ships Swagger UI 5, which reads the OpenAPI 3.1 document FastAPI
writes (`swagger-ui-bundle`'s Swagger UI 4 refused it: "does not specify a valid
version field"); only its static files are used.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles


def _without_default_422(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 for every route with parameters; we answer validation
    errors with 400 VALIDATION_ERROR, so drop its 422 (our own 422 ENGINE_ERROR stays)."""
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            ref = str(responses.get("422", {}).get("content", {}).get("application/json", {}))
            if "HTTPValidationError" in ref:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The API key as a bearer token"},
}


def _with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Every `/api` route takes the key in `X-API-Key` or as a bearer token.

    Declared here, not through FastAPI's security dependencies, which would cost on every
    request; `get_principal` reads the key the same two ways."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api"):
            for operation in operations.values():
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    return schema


def _swagger_page() -> bytes:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="OpenWA API",
        swagger_js_url="/docs/static/swagger-ui-bundle.js",
        swagger_css_url="/docs/static/swagger-ui.css",
        swagger_favicon_url="/docs/static/favicon.png",
    )
    return bytes(page.body)


def _docs_csp(page: bytes) -> str:
    """The page's one inline script (Swagger UI's start-up call) is allowed by its hash,
    so no `'unsafe-inline'` at all (Swagger UI 5 sets its styles through the DOM, which a
    policy does not govern); its stylesheet draws icons from `data:` images; "Try it out"
    calls this same origin."""
    inline = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in inline
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


SWAGGER_PAGE = _swagger_page()
# Read by the request middleware, which sends it on every `/docs` response.
DOCS_CSP = _docs_csp(SWAGGER_PAGE)


def install_docs(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_security(
                _without_default_422(
                    get_openapi(
                        title=app.title,
                        version=app.version,
                        description=app.description,
                        routes=app.routes,
                    )
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    static = Path(str(files("fastapi_offline") / "static"))
    app.mount("/docs/static", StaticFiles(directory=static), name="swagger-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        # Rendered once at import: the CSP carries the hash of exactly this page's script.
        return HTMLResponse(SWAGGER_PAGE)
