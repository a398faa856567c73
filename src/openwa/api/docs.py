"""Swagger UI from the installed `fastapi-offline` package: no CDN, works offline.

`fastapi-offline` ships Swagger UI 5, which reads the OpenAPI 3.1 document FastAPI
writes (`swagger-ui-bundle`'s Swagger UI 4 refused it: "does not specify a valid
version field"); only its static files are used.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

from openwa.api.envelope import ErrorEnvelope
from openwa.api.request_bodies import extra_schemas, model_schemas
from openwa.api.responses import METHOD_NOT_ALLOWED, NO_SUCH_ROUTE, document, route_answers


def _with_errors(schema: dict[str, Any], routes: list[BaseRoute]) -> dict[str, Any]:
    """Each operation's error responses, all derived in `api/responses.py`: the error
    envelope for every status the route can answer. FastAPI's own 422 (a validation
    error shape we never send: validation is a 400 VALIDATION_ERROR) goes with them."""
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        item = schema["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = item.get(method.lower())
            if operation is None:
                continue
            responses = operation["responses"]
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            responses.update({str(k): v for k, v in document(route_answers(route)).items()})
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name, component in {**extra_schemas(), **model_schemas(ErrorEnvelope)}.items():
        schemas.setdefault(name, component)  # FastAPI's own rendering of a model stays
    components["responses"] = {
        "MethodNotAllowed": document([METHOD_NOT_ALLOWED])[405],
        "NoSuchRoute": {**document([NO_SUCH_ROUTE])[404], "description": "No route has this path"},
    }
    return schema


# The document's sections in reading order (Swagger UI shows the tags in this order),
# whatever order the routers are matched in.
TAG_ORDER = (
    "health",
    "keys",
    "audit",
    "engines",
    "cluster",
    "sessions",
    "messages",
    "webhooks",
    "instance webhooks",
    "events",
    "chats",
    "contacts",
    "groups",
    "mock engine",
)


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


# Documents made, by routes list: (the routes, kept so their id is not reused; document).
_DOCUMENTS: dict[tuple[str, str, str, int], tuple[Sequence[BaseRoute], Any]] = {}


def _document(title: str, version: str, description: str, routes: Sequence[BaseRoute]) -> Any:
    """The OpenAPI document of these routes, made once per process: every app made from
    the same routes shares it (it takes as long to make as the routes themselves)."""
    key = (title, version, description, id(routes))
    if key not in _DOCUMENTS:
        document = get_openapi(
            title=title,
            version=version,
            description=description,
            routes=list(routes),
            tags=[{"name": tag} for tag in TAG_ORDER],
        )
        _DOCUMENTS[key] = (routes, _with_security(_with_errors(document, list(routes))))
    return _DOCUMENTS[key][1]


def install_docs(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """The document of `routes` (the API's, shared by every app) and Swagger UI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app.title, app.version, app.description, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    static = Path(str(files("fastapi_offline") / "static"))
    app.mount("/docs/static", StaticFiles(directory=static), name="swagger-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        # Rendered once at import: the CSP carries the hash of exactly this page's script.
        return HTMLResponse(SWAGGER_PAGE)
