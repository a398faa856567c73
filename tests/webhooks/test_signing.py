"""Standard Webhooks signatures, checked only with the `standardwebhooks` library."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import datetime
from typing import Any

import pytest

from openwa.db.models.webhook import WebhookRow
from openwa.kit.clock import utcnow
from tests.fixtures.app import Api, wait_for
from tests.webhooks.receiver import Received, Receiver
from tests.webhooks.support import (
    data_of,
    error_of,
    hooks_path,
    inbound,
    new_secret,
    ready_session,
    register,
    verifies,
)


async def one_delivery(api: Api, receiver: Receiver, session_id: str, text: str) -> Received:
    """Make a `message.received` event and return its (first) request at the receiver."""
    message_id = await inbound(api, session_id, text)

    def arrived(requests: list[Received]) -> bool:
        return any(
            r.event == "message.received" and r.payload["data"]["id"] == message_id
            for r in requests
        )

    requests = await receiver.wait_for(arrived, what=f"delivery of {message_id}")
    return next(
        r
        for r in requests
        if r.event == "message.received" and r.payload["data"]["id"] == message_id
    )


def assert_standard_headers(request: Received) -> None:
    body = request.payload
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["webhook-id"] == body["id"]
    timestamp = request.headers["webhook-timestamp"]
    assert timestamp.isdigit(), timestamp
    assert abs(int(timestamp) - time.time()) < 60
    signatures = request.headers["webhook-signature"].split(" ")
    assert all(s.startswith("v1,") for s in signatures), signatures
    assert set(body) >= {"id", "event", "sessionId", "timestamp", "data", "engine", "metadata"}


async def test_generated_secret_signs_deliveries(hapi: Api, receiver: Receiver) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64

    request = await one_delivery(hapi, receiver, session["id"], "hello")

    assert_standard_headers(request)
    assert request.payload["sessionId"] == session["id"]
    assert request.payload["event"] == "message.received"
    assert verifies(secret, request)
    assert not verifies(new_secret(), request)
    # A changed body no longer verifies.
    tampered = Received(**{**request.__dict__, "body": request.body.replace(b"hello", b"HELLO")})
    assert not verifies(secret, tampered)


@pytest.mark.parametrize("size", [24, 32, 64])
async def test_given_secret_signs_deliveries(hapi: Api, receiver: Receiver, size: int) -> None:
    session = await ready_session(hapi)
    secret = new_secret(size)
    hook = await register(
        hapi, session["id"], receiver.url, events=["message.received"], secret=secret
    )
    assert hook["secret"] == secret

    request = await one_delivery(hapi, receiver, session["id"], "with my secret")

    assert_standard_headers(request)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verifies(secret, request)


async def test_rotation_signs_with_both_secrets_during_the_grace_period(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    old = hook["secret"]
    path = f"{hooks_path(session['id'])}/{hook['id']}/rotate-secret"

    rotated = data_of(await hapi.request("POST", path, json={"graceSeconds": 3600}))
    new = rotated["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert rotated["previousSecretValidUntil"]

    request = await one_delivery(hapi, receiver, session["id"], "during rotation")
    assert_standard_headers(request)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verifies(new, request)
    assert verifies(old, request)
    assert not verifies(new_secret(), request)


async def test_after_the_grace_period_only_the_new_secret_verifies(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    old = hook["secret"]
    path = f"{hooks_path(session['id'])}/{hook['id']}/rotate-secret"

    new = data_of(await hapi.request("POST", path, json={"graceSeconds": 1}))["secret"]
    async with hapi.services.db() as db:
        row = await db.get(WebhookRow, hook["id"])
        assert row is not None
        assert row.previous_secret_until is not None
        grace_ends = row.previous_secret_until

    async def now() -> datetime:
        return utcnow()

    await wait_for(now, lambda moment: moment > grace_ends, 5, "the end of the grace period")

    request = await one_delivery(hapi, receiver, session["id"], "after the grace")
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, request)
    assert not verifies(old, request)


async def test_rotation_without_grace_drops_the_old_secret_at_once(
    hapi: Api, receiver: Receiver
) -> None:
    session = await ready_session(hapi)
    hook = await register(hapi, session["id"], receiver.url, events=["message.received"])
    path = f"{hooks_path(session['id'])}/{hook['id']}/rotate-secret"

    new = data_of(await hapi.request("POST", path, json={"graceSeconds": 0}))["secret"]

    request = await one_delivery(hapi, receiver, session["id"], "no grace")
    assert verifies(new, request)
    assert not verifies(hook["secret"], request)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BAD_SECRETS: dict[str, Any] = {
    "no prefix": _b64(secrets.token_bytes(32)),
    "other prefix": "secret_" + _b64(secrets.token_bytes(32)),
    "bad base64": "whsec_not*base64!!",
    "10 bytes": "whsec_" + _b64(secrets.token_bytes(10)),
    "23 bytes": "whsec_" + _b64(secrets.token_bytes(23)),
    "65 bytes": "whsec_" + _b64(secrets.token_bytes(65)),
    "100 bytes": "whsec_" + _b64(secrets.token_bytes(100)),
    "empty": "",
    "prefix only": "whsec_",
    "not a string": 12345,
}


async def test_given_secrets_in_other_forms_are_refused(api: Api) -> None:
    session = await api.create_session("bad-secrets", engine="mock")
    for case, secret in BAD_SECRETS.items():
        for path in (hooks_path(session["id"]), hooks_path(None)):
            response = await api.request(
                "POST", path, json={"url": "http://93.184.215.14/hook", "secret": secret}
            )
            error = error_of(response, 400, "VALIDATION_ERROR", case)
            assert any("secret" in str(item).lower() for item in error["details"]), (case, error)
    listed = data_of(await api.request("GET", hooks_path(session["id"])))
    assert listed == []


async def test_secret_is_shown_only_on_create_and_rotate(api: Api) -> None:
    session = await api.create_session("secret-shown", engine="mock")
    base = hooks_path(session["id"])
    created = data_of(
        await api.request("POST", base, json={"url": "http://93.184.215.14/hook", "active": False}),
        201,
    )
    assert created["secret"].startswith("whsec_")
    item = f"{base}/{created['id']}"

    def assert_no_secret(value: Any) -> None:
        text = str(value)
        assert "secret" not in value, value
        assert created["secret"] not in text
        assert created["secret"].removeprefix("whsec_") not in text

    assert_no_secret(data_of(await api.request("GET", item)))
    [listed] = data_of(await api.request("GET", base))
    assert_no_secret(listed)
    patched = data_of(await api.request("PATCH", item, json={"headers": {"X-Team": "a"}}))
    assert_no_secret(patched)
    assert patched["headers"] == {"X-Team": "a"}

    rotated = data_of(await api.request("POST", f"{item}/rotate-secret", json={}))
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    after = data_of(await api.request("GET", item))
    assert "secret" not in after
    assert rotated["secret"] not in str(after)
    assert rotated["secret"] not in str(data_of(await api.request("GET", base)))
