"""Input bounds: what the database cannot hold is refused at the edge, by class.

Integers past int64, NUL bytes (PostgreSQL refuses them in text and JSON), numbers
where a boolean or a date is expected: each a 400 VALIDATION_ERROR in the envelope,
never a 500, on both databases. Engine reports are cleaned instead (they cannot be
refused), and a session never stays `ready` in the database while its runtime is not.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from openwa.db.models import ContactRow
from openwa.engines.base import Disconnected, MessageReceived
from openwa.messages import reports as reports_module
from openwa.sessions.records import SessionRecords
from tests.api.checks import assert_error, problem
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.messages.support import (
    plus,
    ready_pair,
    ready_session,
    send_text,
    stored_and_set_aside,
    wait_sent,
)

TOO_BIG = 2**63
TOO_SMALL = -(2**63) - 1
JSON = {"Content-Type": "application/json"}


def _refused(response: Any, case: object) -> str | None:
    found = problem(assert_error, response, 400, "VALIDATION_ERROR")
    return None if found is None else f"{case}: {found}"


async def _all_refused(api: Api, cases: list[tuple[str, str, dict[str, Any]]]) -> None:
    problems = []
    for method, url, kwargs in cases:
        response = await api.request(method, url, **kwargs)
        problems.append(_refused(response, (method, url, kwargs.get("json"))))
    assert [p for p in problems if p] == []


# --- 1. integers ---------------------------------------------------------------------


async def test_integers_past_int64_are_validation_errors(api: Api) -> None:
    session = await api.create_session("ints", autoStart=False)
    hooks = f"/api/sessions/{session['id']}/webhooks/wh_none"
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for big in (TOO_BIG, TOO_SMALL, 10**30):
        cases += [
            ("GET", f"/api/events?after={big}", {}),
            ("GET", f"/api/events?limit={big}", {}),
            ("GET", f"/api/events/stream?after={big}", {}),
            ("GET", f"/api/sessions?page={big}", {}),
            ("POST", f"{hooks}/deliveries/{big}/retry", {}),
            ("POST", f"/api/webhooks/wh_none/deliveries/{big}/retry", {}),
            ("GET", f"{hooks}/deliveries?limit={big}", {}),
            ("GET", f"/api/sessions/{session['id']}/mock/transmitted?limit={big}", {}),
            ("POST", f"{hooks}/rotate-secret", {"json": {"graceSeconds": big}}),
        ]
    await _all_refused(api, cases)


async def test_every_integer_parameter_is_bounded(api: Api) -> None:
    """The class guard: an integer path or query parameter without both bounds would let
    a number through that the database cannot hold."""
    document = (await api.request("GET", "/openapi.json", key=None)).json()
    unbounded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                variants = schema.get("anyOf", [schema])
                for variant in variants:
                    if variant.get("type") == "integer" and not (
                        "maximum" in variant and "minimum" in variant
                    ):
                        unbounded.append((method, path, parameter["name"]))
    assert unbounded == []


# --- 2. NUL bytes ---------------------------------------------------------------------


async def test_nul_bytes_anywhere_are_validation_errors(api: Api) -> None:
    a, b = await ready_pair(api)
    sid = a["id"]
    base = f"/api/sessions/{sid}"
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{base}/groups", {"json": {"name": "bad\x00group", "participants": [plus(b)]}}),
        ("GET", "/api/events?events=message.received%00", {}),
        ("GET", "/api/events?sessions=a%00b", {}),
        ("GET", "/api/events/stream?events=%00", {}),
        ("GET", "/api/sessions?unknown=%00", {}),
        ("POST", f"{base}/mock/disconnect", {"json": {"reason": "gone\x00"}}),
        ("POST", f"{base}/messages/text", {"json": {"chatId": plus(b), "text": "hi\x00"}}),
        ("POST", f"{base}/messages/text", {"json": {"chatId": plus(b), "text": "hi", "x\x00": 1}}),
        ("POST", f"{base}/mock/inbound", {"json": {"from": plus(b), "text": "\x00"}}),
        ("PATCH", base, {"json": {"config": {"metadata": {"k\x00": "v"}}}}),
        ("PATCH", base, {"json": {"config": {"metadata": {"k": "v\x00"}}}}),
        ("POST", f"{base}/webhooks", {"json": {"url": "https://example.com/\x00"}}),
        ("POST", "/api/keys", {"json": {"name": "k", "role": "viewer", "sessions": ["\x00"]}}),
        ("GET", "/api/sessions/bad%00name", {}),
        ("GET", f"{base}/messages/3EB0%00", {}),
        ("GET", f"{base}/contacts/a%00b", {}),
        ("GET", f"{base}/groups/1%00@g.us", {}),
        ("GET", f"{base}/chats/a%00b/messages", {}),
        ("GET", f"{base}/webhooks/wh_%00", {}),
    ]
    await _all_refused(api, cases)
    # The refused disconnect left the session as it was: ready, and sending.
    assert (await api.session(sid))["status"] == "ready"
    sent = await send_text(api, sid, plus(b), "still here")
    await wait_sent(api, sid, sent["id"])


async def test_half_a_character_anywhere_is_a_validation_error(app_factory: AppFactory) -> None:
    """A lone UTF-16 surrogate (`"\\ud800"` in JSON) cannot be written out as UTF-8: in a
    session's `metadata` or a webhook's header it was stored, its answer was a 500, and
    so was every later read of the session and the session list."""
    async with app_factory.running(webhook_allow_private=True) as api:
        a, b = await ready_pair(api)
        sid = a["id"]
        base = f"/api/sessions/{sid}"
        hook = "http://127.0.0.1:9/"
        made = (await api.request("POST", f"{base}/webhooks", json={"url": hook})).json()
        half = "\ud800"
        bodies: list[tuple[str, str, dict[str, Any]]] = [
            ("PATCH", base, {"config": {"metadata": {"a": half}}}),
            ("PATCH", base, {"config": {"metadata": {half: "a"}}}),
            ("POST", "/api/sessions", {"name": "x", "config": {"metadata": {"a": half}}}),
            ("POST", f"{base}/webhooks", {"url": hook, "headers": {"X-A": half}}),
            ("POST", "/api/webhooks", {"url": hook, "headers": {"X-A": half}}),
            ("PATCH", f"{base}/webhooks/{made['data']['id']}", {"headers": {"X-A": half}}),
            ("PATCH", base, {"config": {"webhooks": [{"url": hook, "headers": {"X-A": half}}]}}),
            ("POST", f"{base}/messages/text", {"chatId": plus(b), "text": f"hi{half}"}),
        ]
        # As a client sends it: the half character escaped (`json.dumps` escapes it).
        cases = [
            (method, url, {"content": json.dumps(body), "headers": JSON})
            for method, url, body in bodies
        ]
        await _all_refused(api, cases)
        # Nothing of them was kept, and the session reads as before.
        assert (await api.session(sid))["config"] == a["config"]
        listed = await api.request("GET", "/api/sessions")
        assert listed.status_code == 200, listed.text
        hooks = (await api.request("GET", f"{base}/webhooks")).json()["data"]
        assert [h["id"] for h in hooks] == [made["data"]["id"]]


async def test_multipart_filename_with_nul_is_a_validation_error(api: Api) -> None:
    a, b = await ready_pair(api)
    # Built by hand: clients percent-encode a NUL in a file name, a raw one must be met.
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("chatId", plus(b)), ("type", "document"))
    ]
    body = (
        "".join(parts).encode()
        + f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="bad\x00name.txt"\r\n'
        + b"Content-Type: text/plain\r\n\r\nhello\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    response = await api.request(
        "POST",
        f"/api/sessions/{a['id']}/messages/media",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    response = await api.request(
        "POST",
        f"/api/sessions/{a['id']}/messages/media",
        data={"chatId": plus(b), "type": "document", "filename": "x\x00.txt"},
        files={"file": ("ok.txt", b"hello", "text/plain")},
    )
    assert_error(response, 400, "VALIDATION_ERROR")


# --- 3. a failed status write does not leave the runtime behind -------------------------


async def test_a_disconnect_whose_write_fails_still_reconverges(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await ready_pair(api)
    failures = {"left": 1}
    original = SessionRecords.disconnected

    async def failing(self: SessionRecords, db: Any, session_id: str, reason: str) -> Any:
        if session_id == a["id"] and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the database refused the write")
        return await original(self, db, session_id, reason)

    monkeypatch.setattr(SessionRecords, "disconnected", failing)
    response = await api.request("POST", f"/api/sessions/{a['id']}/mock/disconnect")
    assert response.status_code == 200, response.text
    await asyncio.sleep(0.5)
    assert failures["left"] == 0
    # Whatever the database says, the session must be usable again by itself.
    await api.wait_status(a["id"], "ready")
    sent = await send_text(api, a["id"], plus(b), "after the failed write")
    await wait_sent(api, a["id"], sent["id"])


async def test_an_engine_reason_with_nul_is_stored_cleaned(api: Api) -> None:
    session = await ready_session(api, "reasons")
    running = api.services.runtime._running[session["id"]]
    running.events.put_nowait(Disconnected("bad\x00reason " + "x" * 5000))
    seen = await wait_for(
        lambda: api.session(session["id"]),
        lambda s: any((h.get("reason") or "").startswith("badreason") for h in s["statusHistory"]),
        10,
        "the cleaned reason",
    )
    reasons = [h.get("reason") or "" for h in seen["statusHistory"]]
    assert all("\x00" not in r and len(r) <= 1024 for r in reasons), reasons
    await api.wait_status(session["id"], "ready")


# --- 4. SSE cursors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "last_event_id"),
    [
        (f"?after={TOO_BIG}", None),
        ("", "1" * 23),
        ("", str(TOO_BIG)),
        ("", "\u00b2"),  # a digit to str.isdigit, not to int()
        ("", "-5"),
    ],
)
async def test_stream_cursor_is_checked_up_front(
    api: Api, query: str, last_event_id: str | None
) -> None:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id.encode()}
    response = await api.request("GET", f"/api/events/stream{query}", headers=headers)
    assert_error(response, 400, "VALIDATION_ERROR")


# --- 5. Starlette-level answers --------------------------------------------------------


async def test_malformed_bodies_are_validation_errors(api: Api) -> None:
    a, _ = await ready_pair(api)
    media = f"/api/sessions/{a['id']}/messages/media"
    cases = [
        ("POST", "/api/sessions", {"content": b"{nope", "headers": JSON}),
        ("POST", "/api/sessions", {"content": b"\xff\xfe", "headers": JSON}),
        (
            "POST",
            media,
            {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
        ),
        (
            "POST",
            media,
            {
                "content": b"garbage without parts",
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
        ),
    ]
    await _all_refused(api, cases)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/sessions", {"GET", "POST"}),
        ("PUT", "/api/sessions/abc", {"GET", "PATCH", "DELETE"}),
        ("GET", "/api/sessions/abc/start", {"POST"}),
        ("POST", "/api/events", {"GET"}),
    ],
)
async def test_405_lists_every_method_of_the_path(
    api: Api, method: str, path: str, allowed: set[str]
) -> None:
    response = await api.request(method, path)
    assert_error(response, 405)
    listed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert listed - {"HEAD"} == allowed, response.headers


# --- 6. strict types -------------------------------------------------------------------


async def test_lax_coercions_are_refused(api: Api) -> None:
    a, b = await ready_pair(api)
    base = f"/api/sessions/{a['id']}"
    text = {"chatId": plus(b), "text": "hi"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{base}/messages/text", {"json": {**text, "sendAt": 1_900_000_000}}),
        ("POST", f"{base}/messages/text", {"json": {**text, "sendAt": "2099-01-01T00:00:00"}}),
        ("PATCH", base, {"json": {"config": {"markOnline": 0}}}),
        ("PATCH", base, {"json": {"config": {"markOnline": "true"}}}),
        ("PATCH", base, {"json": {"config": {"ignore": {"groups": 1}}}}),
        ("POST", "/api/sessions", {"json": {"name": "lax", "autoStart": "false"}}),
        ("POST", "/api/sessions", {"json": {"name": 12345}}),
        ("POST", f"{base}/webhooks", {"json": {"url": "https://example.com/x", "active": 1}}),
        ("POST", f"{base}/webhooks/wh_x/rotate-secret", {"json": {"graceSeconds": "60"}}),
        ("POST", f"{base}/webhooks/wh_x/rotate-secret", {"json": {"graceSeconds": 60.5}}),
        (
            "POST",
            f"{base}/messages/location",
            {"json": {"chatId": plus(b), "latitude": "1.5", "longitude": 2}},
        ),
        ("POST", f"{base}/messages/text", {"json": {"chatId": 628123456789, "text": "hi"}}),
        ("POST", "/api/keys", {"json": {"name": "k", "role": 1}}),
    ]
    await _all_refused(api, cases)


async def test_strict_bodies_still_take_what_they_should(api: Api) -> None:
    a, b = await ready_pair(api)
    base = f"/api/sessions/{a['id']}"
    scheduled = {"chatId": plus(b), "text": "later", "sendAt": "2099-01-01T00:00:00+07:00"}
    assert (await api.request("POST", f"{base}/messages/text", json=scheduled)).status_code == 202
    location = {"chatId": plus(b), "latitude": 1, "longitude": 2.5}
    assert (await api.request("POST", f"{base}/messages/location", json=location)).status_code == (
        202
    )
    patched = await api.request("PATCH", base, json={"config": {"markOnline": True}})
    assert patched.status_code == 200, patched.text
    key = await api.request("POST", "/api/keys", json={"name": "k", "role": "viewer"})
    assert key.status_code == 201, key.text
    upload = await api.request(
        "POST",
        f"{base}/messages/media",
        data={"chatId": plus(b), "type": "document", "sendAt": "2099-01-01T00:00:00Z"},
        files={"file": ("ok.txt", b"hello", "text/plain")},
    )
    assert upload.status_code == 202, upload.text


# --- 7. engine reports are cleaned, not refused ------------------------------------------


def _received(n: int, now: datetime, push_name: str | None, text: str | None = None) -> Any:
    chat_id = f"49151000000{n:02d}@s.whatsapp.net"
    return MessageReceived(
        id=f"3EB0{n:020X}",
        chat_id=chat_id,
        sender=chat_id,
        type="text",
        content={"text": text or f"message {n}"},
        timestamp=now,
        push_name=push_name,
    )


async def test_push_names_are_cleaned_before_storage(api: Api) -> None:
    session = await ready_session(api, "pushnames")
    row = api.services.directory.get(session["id"])
    assert row is not None
    now = datetime.now(UTC)
    reports = [
        _received(1, now, "Dora"),
        _received(2, now, "bad \x00 na\x1bme"),
        _received(3, now, "L" * 5000),
    ]
    await api.services.reports.on_engine_events(row, list(reports))
    stored, aside = await stored_and_set_aside(api, row.id)
    async with api.services.db() as db:
        query = select(ContactRow.chat_id, ContactRow.push_name)
        names = dict((await db.execute(query.where(ContactRow.session_id == row.id))).all())
    assert {r.id for r in reports} <= stored
    assert aside == []
    assert names[reports[1].chat_id] == "bad  name"
    assert names[reports[2].chat_id] == "L" * 256


async def test_one_failing_report_does_not_sink_its_run(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On both databases: a report that fails (here, by a fault put in its way) is set
    aside alone and the rest of its run is stored."""
    session = await ready_session(api, "setaside")
    row = api.services.directory.get(session["id"])
    assert row is not None
    now = datetime.now(UTC)
    reports = [_received(1, now, "A"), _received(2, now, "Poison"), _received(3, now, "C")]
    original = reports_module.upsert_contact

    async def poisoned(db: Any, session_id: str, chat_id: str, **kwargs: Any) -> None:
        if kwargs.get("push_name") == "Poison":
            raise RuntimeError("refused")
        await original(db, session_id, chat_id, **kwargs)

    monkeypatch.setattr(reports_module, "upsert_contact", poisoned)
    await api.services.reports.on_engine_events(row, list(reports))
    stored, aside = await stored_and_set_aside(api, row.id)
    assert stored >= {reports[0].id, reports[2].id}
    assert reports[1].id not in stored
    assert [(r.kind, r.report["id"]) for r in aside] == [("MessageReceived", reports[1].id)]
