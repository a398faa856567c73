"""The envelope on every answer, and no request however malformed gets a 500."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api.checks import (
    REQUEST_ID_RE,
    assert_error,
    assert_meta,
    assert_ok,
    assert_page,
    problem,
    tolerant_client,
)
from tests.fixtures.app import ADMIN_KEY, Api, AppFactory

JSON = {"Content-Type": "application/json"}

# --- meta on every response ------------------------------------------------------------


async def test_meta_on_success_and_error(api: Api) -> None:
    created = await api.request("POST", "/api/sessions", json={"name": "meta", "autoStart": False})
    assert_ok(created, 201)
    responses = [
        created,
        await api.request("GET", "/api/sessions"),
        await api.request("GET", "/api/sessions/meta"),
        await api.request("GET", "/api/keys"),
        await api.request("GET", "/health"),
        await api.request("GET", "/health/ready"),
        await api.request("POST", "/api/sessions", json={}),
        await api.request("GET", "/api/sessions", key=None),
        await api.request("GET", "/api/sessions/nosuch"),
        await api.request("GET", "/api/sessions/meta/qr"),
        await api.request("POST", "/api/sessions", json={"name": "meta"}),
        await api.request("GET", "/api/no-such-route"),
        await api.request("PUT", "/api/sessions"),
    ]
    seen = set()
    for response in responses:
        body = assert_meta(response)
        request_id = body["meta"]["requestId"]
        assert REQUEST_ID_RE.fullmatch(request_id), request_id
        seen.add(request_id)
    assert len(seen) == len(responses), "request ids repeat"


async def test_request_id_on_non_json_responses(api: Api) -> None:
    for path in ("/docs", "/metrics", "/openapi.json"):
        response = await api.request("GET", path, headers={"X-Request-Id": "trace-1"})
        assert response.headers.get("x-request-id") == "trace-1", path
        response = await api.request("GET", path)
        assert REQUEST_ID_RE.fullmatch(response.headers.get("x-request-id", "")), path


SAFE_IDS = ["abc", "trace-0123", "01JD8X0000000000000000000A", "a.b:c/d+e=f_g-h", "x" * 128]
UNSAFE_IDS = [
    "has spaces",
    "x" * 500,
    "x" * 129,
    "semi;colon",
    'quote"d',
    "<script>",
    "tab\there",
    "caf\u00e9",
    "",
]


def echoed(response: httpx.Response, given_id: str) -> None:
    body = assert_meta(response)
    assert body["meta"]["requestId"] == given_id, body["meta"]
    assert response.headers["x-request-id"] == given_id


def replaced(response: httpx.Response) -> None:
    request_id = assert_meta(response)["meta"]["requestId"]
    assert REQUEST_ID_RE.fullmatch(request_id), request_id


async def test_safe_request_id_is_echoed(api: Api) -> None:
    problems = {}
    for given_id in SAFE_IDS:
        for url, key in [
            ("/api/sessions", ADMIN_KEY),
            ("/api/sessions/nosuch", ADMIN_KEY),
            ("/api/sessions", None),
            ("/health", None),
        ]:
            headers = {"X-Request-Id": given_id}
            response = await api.request("GET", url, key=key, headers=headers)
            if found := problem(echoed, response, given_id):
                problems[(given_id[:20], url, key is None)] = found
    assert not problems, problems


async def test_unsafe_request_id_is_replaced(api: Api) -> None:
    problems = {}
    for given_id in UNSAFE_IDS:
        for url in ("/api/sessions", "/api/sessions/nosuch"):
            headers = {"X-Request-Id": given_id.encode("utf-8")}
            response = await api.request("GET", url, headers=headers)
            if found := problem(replaced, response):
                problems[(given_id[:20], url)] = found
    assert not problems, problems


async def test_request_id_generated_per_request(api: Api) -> None:
    ids = set()
    for _ in range(20):
        response = await api.request("GET", "/api/sessions")
        request_id = assert_meta(response)["meta"]["requestId"]
        assert REQUEST_ID_RE.fullmatch(request_id), request_id
        ids.add(request_id)
    assert len(ids) == 20


# --- malformed requests ------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed json", b'{"name": "x",'),
    ("not json at all", b"hello"),
    ("json array", b'["name", "x"]'),
    ("json string", b'"name"'),
    ("json number", b"42"),
    ("json null", b"null"),
    ("huge integer name", b'{"name": 1' + b"0" * 5000 + b"}"),
    ("huge integer flag", b'{"name": "big", "autoStart": 1' + b"0" * 400 + b"}"),
    ("huge float", b'{"name": "big", "autoStart": 1e999}'),
    ("NaN", b'{"name": "nan", "autoStart": NaN}'),
    ("huge metadata int", b'{"name": "big", "config": {"metadata": {"a": 1' + b"0" * 300 + b"}}}"),
    ("deep arrays", b'{"name": "deep", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("deep objects", b'{"name": "deep", "config": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001),
    (
        "moderately deep",
        b'{"name": "deep", "config": {"metadata": ' + b"[" * 900 + b"]" * 900 + b"}}",
    ),
    ("invalid utf-8", b'{"name": "\xff\xfe\xfd"}'),
    ("invalid utf-8 key", b'{"\xc3\x28": "x"}'),
    ("truncated utf-8", b'{"name": "abc\xe2\x82"}'),
    ("lone surrogate", b'{"name": "\\ud800"}'),
    ("nul in name", b'{"name": "a\\u0000b"}'),
    ("raw nul", b'{"name": "a\x00b"}'),
    ("nul in engine", b'{"name": "nul-engine", "engine": "mock\\u0000"}'),
    ("empty body", b""),
    ("whitespace body", b"   \n "),
    ("duplicate keys", b'{"name": "a b", "name": "c d"}'),
    ("unknown field", b'{"name": "x", "bogus": 1}'),
    ("wrong types", b'{"name": ["x"], "autoStart": "maybe", "config": 5}'),
    ("bad engine", b'{"name": "x", "engine": "telegram"}'),
    ("bad proxy", b'{"name": "x", "config": {"proxy": "ftp://h"}}'),
    ("bad proxy port", b'{"name": "x", "config": {"proxy": "http://h:99999"}}'),
    (
        "too much metadata",
        json.dumps(
            {"name": "x", "config": {"metadata": {f"k{i}": "v" for i in range(21)}}}
        ).encode(),
    ),
]


async def test_bad_body_on_create_is_400(api: Api) -> None:
    problems = {}
    for label, content in BAD_BODIES:
        response = await api.request("POST", "/api/sessions", content=content, headers=JSON)
        if found := problem(assert_error, response, 400):
            problems[label] = found
    assert not problems, problems
    _, pagination = assert_page(await api.request("GET", "/api/sessions"))
    assert pagination["total"] == 0


async def test_bad_body_on_patch_is_400(api: Api) -> None:
    before = await api.create_session("target", autoStart=False)
    problems = {}
    for label, content in BAD_BODIES:
        response = await api.request("PATCH", "/api/sessions/target", content=content, headers=JSON)
        if found := problem(assert_error, response, 400):
            problems[label] = found
    assert not problems, problems
    assert (await api.session("target"))["config"] == before["config"]


async def test_bad_body_is_a_validation_error(api: Api) -> None:
    """Every body that is not valid input, parseable or not, is VALIDATION_ERROR with details."""
    wrong = {}
    for label, content in BAD_BODIES:
        response = await api.request("POST", "/api/sessions", content=content, headers=JSON)
        error = assert_error(response, 400)
        if error["code"] != "VALIDATION_ERROR" or not error["details"]:
            wrong[label] = error
    assert not wrong, wrong


async def json_body_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every /api operation that takes a JSON body, from the spec."""
    spec = (await api.request("GET", "/openapi.json", key=None)).json()
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api")
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


async def test_bad_body_on_every_json_route_is_400(api: Api) -> None:
    await api.create_session("target", autoStart=False)
    chosen = ("malformed json", "invalid utf-8", "deep arrays", "raw nul", "json array")
    routes = await json_body_routes(api)
    assert len(routes) >= 5, routes
    problems = {}
    async with tolerant_client(api.app, ADMIN_KEY) as client:
        for method, template in routes:
            url = re.sub(r"\{(\w+)\}", lambda m: "target" if m[1] == "id" else "x1", template)
            for label, content in BAD_BODIES:
                if label not in chosen:
                    continue
                response = await client.request(method, url, content=content, headers=JSON)
                if found := problem(assert_error, response, 400):
                    problems[(method, template, label)] = found
    assert not problems, problems


WRONG_CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "image/png",
    "application/json; charset=latin-1",
    "nonsense",
]


async def test_wrong_content_type(api: Api) -> None:
    problems = {}
    for content_type in WRONG_CONTENT_TYPES:
        response = await api.request(
            "POST",
            "/api/sessions",
            content=b'{"name": "typed", "autoStart": false}',
            headers={"Content-Type": content_type},
        )
        if response.status_code == 201:
            # Only a JSON type may be read as JSON.
            if "json" not in content_type:
                problems[content_type] = "read as JSON"
            assert_ok(await api.request("DELETE", "/api/sessions/typed"))
            continue
        if found := problem(assert_error, response):
            problems[content_type] = found
        elif response.json()["error"]["code"] not in ("VALIDATION_ERROR", "UNSUPPORTED_MEDIA_TYPE"):
            problems[content_type] = response.text[:300]
    assert not problems, problems


async def test_form_body_is_refused(api: Api) -> None:
    response = await api.request("POST", "/api/sessions", data={"name": "formed"})
    assert_error(response)
    response = await api.request("POST", "/api/sessions", files={"name": ("n.txt", b"formed")})
    assert_error(response)
    _, pagination = assert_page(await api.request("GET", "/api/sessions"))
    assert pagination["total"] == 0


NUL_CASES: list[tuple[str, str, Any]] = [
    ("POST", "/api/keys", {"name": "nul\u0000key", "role": "viewer"}),
    ("POST", "/api/keys", {"name": "nul", "role": "viewer", "sessions": ["tar\u0000get"]}),
    ("POST", "/api/sessions", {"name": "nul", "config": {"metadata": {"k": "v\u0000"}}}),
    ("PATCH", "/api/sessions/target", {"config": {"metadata": {"k": "v\u0000v"}}}),
    ("PATCH", "/api/sessions/target", {"config": {"metadata": {"k\u0000": "v"}}}),
    ("PATCH", "/api/sessions/target", {"config": {"proxy": "http://u\u0000:p@h:1"}}),
    ("POST", "/api/sessions/target/pairing-code", {"phoneNumber": "+1 555\u0000 0100"}),
    ("GET", "/api/events?sessions=tar%00get", None),
    ("GET", "/api/events?sessions=target,%00", None),
    ("GET", "/api/sessions?page=1%00", None),
]


def refused_or_stored(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = assert_error(response)
        # The session never started, so a pairing code may be refused for that instead.
        assert error["code"] in ("VALIDATION_ERROR", "SESSION_NOT_READY"), error


async def test_nul_bytes_in_strings_are_not_a_500(api: Api) -> None:
    """PostgreSQL refuses NUL in text: the server must refuse it (or store it safely)."""
    await api.create_session("target", autoStart=False)
    problems = {}
    async with tolerant_client(api.app, ADMIN_KEY) as client:
        for method, url, body in NUL_CASES:
            response = await client.request(method, url, json=body)
            if found := problem(refused_or_stored, response):
                problems[(method, url, repr(body))] = found
    # The app still works.
    assert_ok(await api.request("GET", "/api/sessions/target"))
    assert_page(await api.request("GET", "/api/keys"))
    assert_page(await api.request("GET", "/api/sessions"))
    assert not problems, problems


async def test_nul_byte_in_disconnect_reason(slow_api: Api) -> None:
    api = slow_api
    await api.create_session("running")
    await api.wait_status("running", "qr_ready")
    response = await api.request(
        "POST", "/api/sessions/running/mock/disconnect", json={"reason": "bad\u0000reason"}
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response)
    assert_ok(await api.request("GET", "/api/sessions/running"))


BAD_QUERIES = [
    "page=abc",
    "page=0",
    "page=-1",
    "page=1.5",
    "page=",
    "page=99999999999999999999999999999999",
    "limit=-1",
    "limit=0",
    "limit=101",
    "limit=abc",
    "limit=1e3",
    "limit=99999999999999999999999999999999",
    "page=%00",
    "limit=%ff",
    "page=1&page=x",
]


def validation_error_with_details(response: httpx.Response) -> None:
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"], error


async def test_bad_query_is_400(api: Api) -> None:
    problems = {}
    for query in BAD_QUERIES:
        for path in ("/api/sessions", "/api/keys"):
            response = await api.request("GET", f"{path}?{query}")
            if found := problem(validation_error_with_details, response):
                problems[(path, query)] = found
    assert not problems, problems


async def test_good_query_edges(api: Api) -> None:
    for query in ("limit=1", "limit=100", "page=1&limit=20", "page=1000", "unknown=1"):
        assert_page(await api.request("GET", f"/api/sessions?{query}"))


BAD_REFS = [
    "x" * 65,
    "x" * 500,
    "-leading-dash",
    "has%20space",
    "semi;colon",
    "caf%C3%A9",
    "%00",
    "%ff",
    "..",
    "ses_",
    "ses_notanid",
    "SES_01JD8X0000000000000000000A",
]


def refused_ref(response: httpx.Response) -> None:
    error = assert_error(response)
    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert error["code"] == "VALIDATION_ERROR", error


async def test_bad_session_ref_is_400_or_404(api: Api) -> None:
    problems = {}
    for ref in BAD_REFS:
        for method, url in [
            ("GET", f"/api/sessions/{ref}"),
            ("POST", f"/api/sessions/{ref}/start"),
            ("DELETE", f"/api/sessions/{ref}"),
        ]:
            if found := problem(refused_ref, await api.request(method, url)):
                problems[(method, url[:60])] = found
    assert not problems, problems


async def test_unknown_route_is_404(api: Api) -> None:
    for method, url in [
        ("GET", "/api/nope"),
        ("GET", "/api/sessions/x/nope"),
        ("POST", "/api/nope"),
        ("GET", "/nope"),
        ("GET", "/api"),
        ("GET", "/docs/static/nope.js"),
        # A trailing slash is no route either (not a bare 307 to a Location built from
        # the request's Host header, answered before authentication).
        ("GET", "/api/sessions/"),
        ("DELETE", "/api/sessions/x/"),
    ]:
        response = await api.request(method, url, headers={"Host": "evil.example"})
        assert_error(response, 404, "NOT_FOUND")
        assert "location" not in response.headers
    # Even without a key.
    assert_error(await api.request("GET", "/api/nope", key=None), 404, "NOT_FOUND")
    assert_error(await api.request("GET", "/api/sessions/", key=None), 404, "NOT_FOUND")


async def test_wrong_method_is_405(api: Api) -> None:
    await api.create_session("target", autoStart=False)
    for method, url in [
        ("PUT", "/api/sessions"),
        ("DELETE", "/api/sessions"),
        ("PATCH", "/api/sessions"),
        ("PUT", "/api/sessions/target"),
        ("POST", "/api/sessions/target"),
        ("GET", "/api/sessions/target/start"),
        ("DELETE", "/api/sessions/target/qr"),
        ("PATCH", "/api/keys"),
        ("POST", "/health"),
    ]:
        response = await api.request(method, url)
        assert_error(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers.get("allow"), (method, url)
    assert (await api.session("target"))["status"] == "created"


async def test_head_and_options_do_not_500(api: Api) -> None:
    for method in ("HEAD", "OPTIONS", "TRACE"):
        for url in ("/api/sessions", "/health", "/api/nope"):
            response = await api.request(method, url)
            assert response.status_code < 500, (method, url, response.text)


async def test_odd_headers_do_not_500(api: Api) -> None:
    for headers in [
        {"X-API-Key": "\u00e9\u00e9\u00e9".encode()},
        {"X-API-Key": b"\xff\xfe"},
        {"Authorization": b"Bearer \xff\xfe"},
        {"X-API-Key": "k" * 8000},
        {"Accept": "image/png"},
        {"Accept": "*/*;q=nonsense"},
        {"Content-Type": "application/json", "Content-Length": "5"},
    ]:
        response = await api.request("GET", "/api/sessions", key=None, headers=headers)
        assert response.status_code < 500, (headers, response.text)
        if response.status_code >= 400:
            assert_error(response)


# --- the body size limit ------------------------------------------------------------------


@pytest.fixture
async def small(app_factory: AppFactory) -> AsyncIterator[Api]:
    api, manager = await app_factory.start(max_body_bytes=2048)
    try:
        yield api
    finally:
        await AppFactory.stop(api, manager)


def big_body(size: int) -> bytes:
    """A session body of about `size` bytes, valid as long as the metadata limits allow."""
    metadata = {f"pad{i}": "x" * 400 for i in range(max(1, round(size / 413)))}
    body = {"name": "big-one", "autoStart": False, "config": {"metadata": metadata}}
    return json.dumps(body).encode()


async def test_large_body_with_content_length_is_413(small: Api) -> None:
    content = big_body(4096)
    for url in ("/api/sessions", "/api/keys", "/api/sessions/any/pairing-code"):
        response = await small.request("POST", url, content=content, headers=JSON)
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    response = await small.request("PATCH", "/api/sessions/any", content=content, headers=JSON)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    _, pagination = assert_page(await small.request("GET", "/api/sessions"))
    assert pagination["total"] == 0


async def test_large_chunked_body_is_413(small: Api) -> None:
    content = big_body(8192)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(content), 500):
            yield content[i : i + 500]

    response = await small.request("POST", "/api/sessions", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    _, pagination = assert_page(await small.request("GET", "/api/sessions"))
    assert pagination["total"] == 0


async def test_one_huge_chunk_is_413(small: Api) -> None:
    content = big_body(100_000)

    async def chunks() -> AsyncIterator[bytes]:
        yield content

    response = await small.request("POST", "/api/sessions", content=chunks(), headers=JSON)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_under_the_limit_passes(small: Api) -> None:
    content = big_body(1500)
    assert 1500 < len(content) < 2048
    assert_ok(await small.request("POST", "/api/sessions", content=content, headers=JSON), 201)

    patch = json.dumps({"config": {"metadata": {"a": "y" * 500, "b": "z" * 500}}}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(patch), 100):
            yield patch[i : i + 100]

    response = await small.request("PATCH", "/api/sessions/big-one", content=chunks(), headers=JSON)
    assert assert_ok(response)["config"]["metadata"] == {"a": "y" * 500, "b": "z" * 500}


async def test_limit_holds_without_a_key(small: Api) -> None:
    response = await small.request(
        "POST", "/api/sessions", key=None, content=big_body(4096), headers=JSON
    )
    assert_error(response)
    assert response.status_code in (401, 413)


async def test_bad_content_length_is_not_500(small: Api) -> None:
    for value in ("abc", "-1", "1" * 40):
        # A raw ASGI call: httpx would not send such a header.
        response = await send_raw(small, [(b"content-length", value.encode())], b"{}")
        assert 400 <= response["status"] < 500, (value, response)
        assert b"Traceback" not in response["body"]
        body = json.loads(response["body"])
        assert body["success"] is False
        assert body["meta"]["requestId"]


async def send_raw(api: Api, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    """One request straight through the ASGI app, headers exactly as given."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/sessions",
        "raw_path": b"/api/sessions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"openwa.test"),
            (b"x-api-key", api.headers()["X-API-Key"].encode()),
            (b"content-type", b"application/json"),
            *headers,
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("openwa.test", 80),
        "state": {},
    }
    sent = False
    result: dict[str, Any] = {"status": None, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result["status"] = message["status"]
        elif message["type"] == "http.response.body":
            result["body"] += message.get("body", b"")

    await api.app(scope, receive, send)
    return result


# --- property: arbitrary JSON never breaks the server ---------------------------------------

# Text that often holds what databases and parsers trip on: NUL, controls, BOM, emoji.
tricky_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"])
    | st.sampled_from(["\x00", "\x7f", "\n", "\u2028", "\ufeff", "\U0001f600"]),
    max_size=80,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        "proxy": st.one_of(json_values, st.sampled_from(["http://u:p@h:8080", "socks5://h:1"])),
        "metadata": st.one_of(
            json_values, st.dictionaries(st.text(max_size=70), st.text(max_size=20), max_size=22)
        ),
        "ignore": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {}, optional={k: json_values for k in ("groups", "status", "channels")}
            ),
        ),
        "markOnline": json_values,
        "webhooks": json_values,
    },
)
create_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(
            json_values, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True)
        ),
        "engine": st.one_of(json_values, st.sampled_from(["mock", "whatsmeow", "telegram"])),
        "autoStart": st.one_of(st.just(False), json_values),
        "config": st.one_of(config_like, json_values),
    },
)
patch_like = st.one_of(st.fixed_dictionaries({"config": config_like}), json_values)

PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_envelope(response: httpx.Response) -> None:
    if response.status_code == 501:
        # The one designed 5xx: what a session's engine cannot do.
        assert_error(response, 501, "NOT_SUPPORTED")
        return
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        assert_ok(response, response.status_code)
    else:
        assert_error(response)


@PROPERTY_SETTINGS
@given(body=st.one_of(create_like, json_values))
@example(body={"name": "nul-meta", "autoStart": False, "config": {"metadata": {"k\x00": "\x00"}}})
@example(body={"name": "a\x00"})
@example(body=[{"name": "x"}])
async def test_any_json_on_create(api: Api, body: Any) -> None:
    response = await api.request("POST", "/api/sessions", json=body)
    assert_envelope(response)
    assert response.status_code in (201, 400, 409, 501), response.text
    if response.status_code == 201:
        created = response.json()["data"]
        assert_ok(await api.request("DELETE", f"/api/sessions/{created['id']}"))


@PROPERTY_SETTINGS
@given(body=patch_like)
@example(body={"config": {"metadata": {"k": "\x00"}, "proxy": "http://\x00:p@h:1"}})
@example(body={"config": None})
async def test_any_json_on_patch(api: Api, body: Any) -> None:
    response = await api.request("GET", "/api/sessions/target")
    if response.status_code == 404:
        await api.create_session("target", autoStart=False)
    response = await api.request("PATCH", "/api/sessions/target", json=body)
    assert_envelope(response)
    assert response.status_code in (200, 400), response.text
    assert_ok(await api.request("GET", "/api/sessions/target"))


key_like = st.fixed_dictionaries(
    {
        "name": st.one_of(tricky_text.filter(bool), st.text(max_size=120), json_values),
        "role": st.one_of(st.sampled_from(["admin", "operator", "viewer"]), json_values),
    },
    optional={"sessions": st.one_of(st.lists(st.text(max_size=70), max_size=3), json_values)},
)


@PROPERTY_SETTINGS
@given(body=st.one_of(key_like, json_values))
@example(body={"name": "nul\x00", "role": "viewer"})
@example(body={"name": "ctl\x01\x7f\n", "role": "operator"})
@example(body={"name": "ok", "role": "viewer", "sessions": ["a\x00"]})
async def test_any_json_on_create_key(api: Api, body: Any) -> None:
    response = await api.request("POST", "/api/keys", json=body)
    assert_envelope(response)
    assert response.status_code in (201, 400), response.text
    if response.status_code == 201:
        created = response.json()["data"]
        assert_ok(await api.request("DELETE", f"/api/keys/{created['id']}"))


# --- an unexpected failure still answers in the envelope ------------------------------------


async def test_unexpected_error_is_a_clean_500(api: Api) -> None:
    """A bug in a route: a 500 envelope with the request id, and no stack trace or detail."""

    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    api.app.add_api_route("/api/test-boom", boom, methods=["GET"])
    async with tolerant_client(api.app, ADMIN_KEY) as client:
        response = await client.get("/api/test-boom", headers={"X-Request-Id": "trace-500"})
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert body["meta"]["requestId"] == "trace-500"
    assert response.headers.get("x-request-id") == "trace-500"
