"""The published OpenAPI spec and the Swagger UI at /docs, served without a CDN."""

from __future__ import annotations

import re
from typing import Any

import openwa.errors
from tests.api.checks import api_routes
from tests.fixtures.app import Api

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}

# Routes of the contract that exist so far; every route of the app is checked as well.
EXPECTED = {
    ("get", "/health"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("post", "/api/keys"),
    ("get", "/api/keys"),
    ("delete", "/api/keys/{key_id}"),
    ("patch", "/api/keys/{key_id}"),
    ("get", "/api/keys/self"),
    ("post", "/api/sessions"),
    ("get", "/api/sessions"),
    ("get", "/api/sessions/{id}"),
    ("patch", "/api/sessions/{id}"),
    ("delete", "/api/sessions/{id}"),
    ("post", "/api/sessions/{id}/start"),
    ("post", "/api/sessions/{id}/stop"),
    ("post", "/api/sessions/{id}/restart"),
    ("post", "/api/sessions/{id}/logout"),
    ("get", "/api/sessions/{id}/qr"),
    ("post", "/api/sessions/{id}/pairing-code"),
    ("post", "/api/sessions/{id}/mock/scan"),
    ("post", "/api/sessions/{id}/mock/disconnect"),
    ("post", "/api/sessions/{id}/mock/inbound"),
    ("post", "/api/sessions/{id}/mock/report"),
    ("get", "/api/sessions/{id}/mock/transmitted"),
    ("post", "/api/sessions/{id}/messages/text"),
    ("get", "/api/sessions/{id}/messages/{message_id}"),
    ("delete", "/api/sessions/{id}/messages/{message_id}"),
    ("post", "/api/sessions/{id}/webhooks"),
    ("get", "/api/sessions/{id}/webhooks"),
    ("get", "/api/sessions/{id}/webhooks/{webhook_id}"),
    ("patch", "/api/sessions/{id}/webhooks/{webhook_id}"),
    ("delete", "/api/sessions/{id}/webhooks/{webhook_id}"),
    ("get", "/api/sessions/{id}/webhooks/{webhook_id}/deliveries"),
    ("post", "/api/sessions/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"),
    ("post", "/api/sessions/{id}/webhooks/{webhook_id}/test"),
    ("post", "/api/sessions/{id}/webhooks/{webhook_id}/rotate-secret"),
    ("post", "/api/webhooks"),
    ("get", "/api/webhooks"),
    ("get", "/api/webhooks/{webhook_id}"),
    ("patch", "/api/webhooks/{webhook_id}"),
    ("delete", "/api/webhooks/{webhook_id}"),
    ("get", "/api/webhooks/{webhook_id}/deliveries"),
    ("post", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"),
    ("post", "/api/webhooks/{webhook_id}/test"),
    ("post", "/api/webhooks/{webhook_id}/rotate-secret"),
    ("get", "/api/events"),
    ("get", "/api/events/stream"),
}


# List endpoints of the contract: `page`/`limit` and `pagination`.
PAGED = (
    "/api/sessions",
    "/api/keys",
    "/api/sessions/{id}/webhooks",
    "/api/sessions/{id}/webhooks/{webhook_id}/deliveries",
    "/api/webhooks",
    "/api/webhooks/{webhook_id}/deliveries",
)


async def spec(api: Api) -> dict[str, Any]:
    response = await api.request("GET", "/openapi.json", key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data: dict[str, Any] = response.json()
    return data


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        node = document["components"]["schemas"][name]
    return node


def error_schema_ok(document: dict[str, Any], response: dict[str, Any]) -> bool:
    """The response is documented as the error envelope: {success, error{code,...}, meta}."""
    content = response.get("content", {}).get("application/json")
    if not content or "schema" not in content:
        return False
    schema = resolve(document, content["schema"])
    props = schema.get("properties", {})
    if not {"success", "error", "meta"} <= set(props):
        return False
    error = resolve(document, props["error"])
    return {"code", "message", "details"} <= set(error.get("properties", {}))


async def test_spec_basics(api: Api) -> None:
    document = await spec(api)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document["info"].get("description")
    schemes = document["components"]["securitySchemes"]
    assert any(
        s.get("type") == "apiKey" and s.get("in") == "header" and s.get("name") == "X-API-Key"
        for s in schemes.values()
    ), schemes
    assert any(
        s.get("type") == "http" and s.get("scheme", "").lower() == "bearer"
        for s in schemes.values()
    ), schemes


async def test_spec_lists_every_route(api: Api) -> None:
    document = await spec(api)
    listed = {(method, path) for method, path, _ in operations(document)}
    assert listed >= EXPECTED, EXPECTED - listed
    routes = api_routes(api.app)
    assert len(routes) >= len(EXPECTED)
    for method, path in routes:
        assert (method.lower(), path) in listed, (method, path)
    operation_ids = [op.get("operationId") for _, _, op in operations(document)]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds repeat"


async def test_every_route_is_described(api: Api) -> None:
    document = await spec(api)
    for method, path, operation in operations(document):
        assert operation.get("summary"), (method, path)
        assert operation.get("description"), (method, path)
        assert operation.get("tags"), (method, path)


async def test_sections_keep_their_reading_order(api: Api) -> None:
    """Routers are matched hottest first; the document lists every tag in TAG_ORDER."""
    document = await spec(api)
    tags = [tag["name"] for tag in document["tags"]]
    used = {tag for _, _, operation in operations(document) for tag in operation["tags"]}
    assert tags[0] == "health"
    assert set(tags) == used


def contract_codes() -> set[str]:
    """Every code the server can put in an error envelope."""
    codes = {
        cls.code
        for cls in vars(openwa.errors).values()
        if isinstance(cls, type) and issubclass(cls, openwa.errors.OpenWAError)
    }
    return codes | {"RATE_LIMITED", "NOT_READY", "NOT_FOUND", "METHOD_NOT_ALLOWED"}


def documented_codes(response: dict[str, Any]) -> set[str]:
    examples = response["content"]["application/json"]["examples"]
    return {example["value"]["error"]["code"] for example in examples.values()}


# Operations that call the session's engine: 409 SESSION_NOT_READY, 422, 501.
ENGINE_OPERATIONS = {
    ("post", "/api/sessions/{id}/pairing-code"),
    ("post", "/api/sessions/{id}/chats/{chat_id}/read"),
    ("post", "/api/sessions/{id}/chats/{chat_id}/typing"),
    ("get", "/api/sessions/{id}/contacts/check/{phone_number}"),
    ("get", "/api/sessions/{id}/contacts/{contact_id}/profile-picture"),
    ("get", "/api/sessions/{id}/groups"),
    ("post", "/api/sessions/{id}/groups"),
    ("get", "/api/sessions/{id}/groups/{group_id}"),
    ("patch", "/api/sessions/{id}/groups/{group_id}"),
    ("post", "/api/sessions/{id}/groups/{group_id}/participants"),
    ("get", "/api/sessions/{id}/groups/{group_id}/invite-code"),
    ("post", "/api/sessions/{id}/groups/{group_id}/leave"),
}
NOT_FOUND_BY_PARAM = {
    "{id}": "SESSION_NOT_FOUND",
    "{message_id}": "MESSAGE_NOT_FOUND",
    "{webhook_id}": "WEBHOOK_NOT_FOUND",
    "{key_id}": "NOT_FOUND",
    "{delivery_id}": "NOT_FOUND",
}


async def test_api_routes_document_their_errors(api: Api) -> None:
    document = await spec(api)
    api_ops = [(m, p, op) for m, p, op in operations(document) if p.startswith("/api")]
    assert api_ops
    codes = contract_codes()
    missing = []
    for method, path, operation in api_ops:
        responses = operation["responses"]
        wanted: dict[str, set[str]] = {
            "400": {"VALIDATION_ERROR"},
            "401": {"UNAUTHORIZED"},
            "403": {"FORBIDDEN"},
            "429": {"RATE_LIMITED"},
            "503": {"NOT_READY"},
        }
        for param, code in NOT_FOUND_BY_PARAM.items():
            if param in path:
                wanted.setdefault("404", set()).add(code)
        if method in ("post", "patch"):
            wanted["413"] = {"PAYLOAD_TOO_LARGE"}
        if (method, path) in ENGINE_OPERATIONS:
            wanted.update({"409": {"SESSION_NOT_READY"}, "422": {"ENGINE_ERROR"}})
            wanted["501"] = {"NOT_SUPPORTED"}
        if path.endswith("/messages/media"):
            wanted["415"] = {"UNSUPPORTED_MEDIA_TYPE"}
        if "{chat_id}" in path or "{group_id}" in path or path.endswith("/messages/text"):
            wanted["400"].add("INVALID_CHAT_ID")
        for status, want in wanted.items():
            if status not in responses:
                missing.append(f"{method.upper()} {path}: {status}")
            elif not want <= documented_codes(responses[status]):
                missing.append(f"{method.upper()} {path}: {status} {want}")
        assert "Retry-After" in responses["429"]["headers"], (method, path)
        for status, response in responses.items():
            assert response.get("description"), (method, path, status)
            if int(status) >= 400:
                assert error_schema_ok(document, response), (method, path, status, response)
                for code in documented_codes(response):
                    assert code in codes, (method, path, status, code)
                    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", code)
    assert not missing, missing


async def test_every_ref_resolves(api: Api) -> None:
    """Walk the whole document: each `$ref` names a component that exists."""
    document = await spec(api)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert any(ref.endswith("/MediaMessageCreate") for ref in refs)
    dangling = []
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                dangling.append(ref)
                break
            target = target[part]
    assert not dangling, sorted(set(dangling))


async def test_model_names_are_distinct(api: Api) -> None:
    """A request model and a response model never share a title (a generated client
    names its classes by title and drops the second of two)."""
    document = await spec(api)
    titles = [s.get("title", n) for n, s in document["components"]["schemas"].items()]
    assert len(titles) == len(set(titles)), titles
    session = document["components"]["schemas"]["Session"]
    assert session["properties"]["config"] == {"$ref": "#/components/schemas/SessionConfigView"}


async def test_no_error_status_is_documented_that_the_server_does_not_use(api: Api) -> None:
    """FastAPI's default 422 "Validation Error" is wrong here: validation is a 400."""
    document = await spec(api)
    wrong = [
        f"{method.upper()} {path}: {status}"
        for method, path, operation in operations(document)
        for status, response in operation["responses"].items()
        if str(
            response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        ).endswith("/HTTPValidationError")
    ]
    assert not wrong, wrong
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})


async def test_api_routes_need_a_key_and_open_routes_do_not(api: Api) -> None:
    document = await spec(api)
    for method, path, operation in operations(document):
        security = operation.get("security", document.get("security"))
        if path.startswith("/api"):
            assert security, (method, path)
        else:
            assert not security, (method, path)


async def test_success_responses_use_the_envelope(api: Api) -> None:
    document = await spec(api)
    wrong = []
    for method, path, operation in operations(document):
        if not path.startswith("/api"):
            continue
        ok = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert ok, (method, path)
        for status, response in ok.items():
            if path.endswith("/stream"):
                assert "text/event-stream" in response["content"], (method, path)
                continue
            if "application/json" not in response.get("content", {}):
                # Raw bytes (media downloads): documented with their own media types.
                assert response.get("content"), (method, path, status)
                continue
            schema = resolve(document, response["content"]["application/json"]["schema"])
            props = schema.get("properties", {})
            if not {"success", "data", "meta"} <= set(props):
                wrong.append(f"{method.upper()} {path} {status}: {schema}")
            elif method == "get" and path in PAGED and "pagination" not in props:
                wrong.append(f"{method.upper()} {path} {status}: no pagination")
    assert not wrong, wrong


async def test_list_routes_document_paging(api: Api) -> None:
    document = await spec(api)
    for path in PAGED:
        params = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert params["page"]["schema"]["minimum"] == 1
        assert params["limit"]["schema"]["minimum"] == 1
        assert params["limit"]["schema"]["maximum"] == 100
        assert params["limit"]["schema"]["default"] == 20


async def test_docs_page_is_local(api: Api) -> None:
    response = await api.request("GET", "/docs", key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "swagger" in page.lower()
    assert "cdn" not in page.lower()
    assert "http://" not in page
    assert "https://" not in page
    assert "//" not in re.sub(r"<!--.*?-->", "", page, flags=re.S).replace("://", ""), (
        "protocol-relative URL"
    )

    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    scripts = re.findall(r"""<script[^>]+src\s*=\s*["']([^"']+)["']""", page)
    styles = re.findall(r"""<link[^>]+href\s*=\s*["']([^"']+\.css)["']""", page)
    assert scripts, page
    assert styles, page
    for url in urls:
        assert url.startswith("/docs/static/"), url
    for url in urls:
        asset = await api.request("GET", url, key=None)
        assert asset.status_code == 200, url
        assert asset.content, url
    for url in scripts:
        asset = await api.request("GET", url, key=None)
        assert "javascript" in asset.headers["content-type"], url
    for url in styles:
        asset = await api.request("GET", url, key=None)
        assert "css" in asset.headers["content-type"], url

    spec_urls = re.findall(r"""url\s*:\s*["']([^"']+)["']""", page)
    assert spec_urls == ["/openapi.json"], spec_urls


async def test_docs_static_does_not_escape_its_folder(api: Api) -> None:
    for url in (
        "/docs/static/../../../etc/passwd",
        "/docs/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/docs/static/..%2f..%2f..%2fetc%2fpasswd",
    ):
        response = await api.request("GET", url, key=None)
        assert response.status_code in (400, 404), url
        assert "root:" not in response.text
