"""Webhook URLs into the server's own network are refused, when saved and when delivered."""

from __future__ import annotations

from typing import Any

from tests.fixtures.app import Api
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    data_of,
    error_of,
    failed_for_good,
    hooks_path,
    inbound,
    ready_session,
    register,
)

PUBLIC_URL = "http://93.184.215.14/hook"  # an IP literal: no DNS needed to check it

FORBIDDEN_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://127.1.2.3/hook",
    "http://localhost/hook",
    "http://localhost:9000/hook",
    "http://10.0.0.1/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",
    "https://100.64.0.1/hook",
]

NOT_HTTP_URLS = [
    "ftp://93.184.215.14/hook",
    "file:///etc/passwd",
    "gopher://93.184.215.14/x",
    "javascript:alert(1)",
    "ws://93.184.215.14/hook",
    "93.184.215.14/hook",
    "http:///no-host",
    # What urlsplit refuses, which answered 500: brackets that do not close, a host
    # that NFKC folds into a delimiter; and a control character no request could carry.
    "http://[::1/q",
    "http://::1]/q",
    "http://a\uff1ab/x",
    "http://\u2100.com/x",
    "http://93.184.215.14/\x01q",
]


async def test_private_urls_are_refused_on_create(api: Api) -> None:
    session = await api.create_session("guarded", engine="mock")
    for base in (hooks_path(session["id"]), hooks_path(None)):
        for url in FORBIDDEN_URLS:
            response = await api.request("POST", base, json={"url": url})
            error_of(response, 400, "WEBHOOK_URL_FORBIDDEN", url)
        assert data_of(await api.request("GET", base)) == []


async def test_a_refused_url_is_echoed_without_its_credentials(api: Api) -> None:
    session = await api.create_session("guarded-echo", engine="mock")
    url = "http://user:pw-0123@127.0.0.1:8080/hook?token=t-0123&page=2"
    response = await api.request("POST", hooks_path(session["id"]), json={"url": url})
    error = error_of(response, 400, "WEBHOOK_URL_FORBIDDEN")
    assert error["details"]["url"] == "http://***:***@127.0.0.1:8080/hook?token=***&page=2"
    assert "pw-0123" not in response.text
    assert "t-0123" not in response.text


async def test_private_urls_are_refused_on_patch(api: Api) -> None:
    session = await api.create_session("guarded-patch", engine="mock")
    for owner in (session["id"], None):
        hook = await register(api, owner, PUBLIC_URL, active=False)
        item = f"{hooks_path(owner)}/{hook['id']}"
        for url in FORBIDDEN_URLS:
            response = await api.request("PATCH", item, json={"url": url})
            error_of(response, 400, "WEBHOOK_URL_FORBIDDEN", url)
        assert data_of(await api.request("GET", item))["url"] == PUBLIC_URL


async def test_urls_that_are_not_http_are_validation_errors(api: Api) -> None:
    session = await api.create_session("schemes", engine="mock")
    base = hooks_path(session["id"])
    hook = await register(api, session["id"], PUBLIC_URL, active=False)
    for url in NOT_HTTP_URLS:
        response = await api.request("POST", base, json={"url": url})
        error_of(response, 400, "VALIDATION_ERROR", url)
        response = await api.request("PATCH", f"{base}/{hook['id']}", json={"url": url})
        error_of(response, 400, "VALIDATION_ERROR", url)


async def test_public_urls_are_accepted(api: Api) -> None:
    session = await api.create_session("public", engine="mock")
    for url in (PUBLIC_URL, "https://93.184.215.14:8443/path?q=1"):
        hook = await register(api, session["id"], url, active=False)
        assert hook["url"] == url


async def test_private_urls_are_accepted_when_allowed(hapi: Api, receiver: Receiver) -> None:
    session = await hapi.create_session("allowed", engine="mock")
    for url in (receiver.url, "http://10.0.0.1/hook", "http://[::1]/hook"):
        hook = await register(hapi, session["id"], url, active=False)
        assert hook["url"] == url


async def refused_at_delivery(apps: Apps, receiver: Receiver, url: str) -> dict[str, Any]:
    """A webhook saved by an app that allowed `url`, then an event in one that does not.

    Returns the failed delivery, after checking that the receiver got nothing.
    """
    allowing = await apps.start(webhook_allow_private=True)
    session = await ready_session(allowing)
    hook = await register(allowing, session["id"], url, events=["message.received"])
    await apps.stop(allowing)

    guarded = await apps.start(webhook_allow_private=False, webhook_max_attempts=2)
    await guarded.wait_status(session["id"], "ready")
    await inbound(guarded, session["id"], "must not leave")

    delivery = await failed_for_good(guarded, session["id"], hook["id"], url)
    assert receiver.requests == [], "a forbidden address was connected to"
    assert delivery["attempts"] == 2
    assert [a["statusCode"] for a in delivery["log"]] == [None, None]
    result: dict[str, Any] = delivery
    return result


async def test_delivery_checks_the_address_again(apps: Apps, receiver: Receiver) -> None:
    delivery = await refused_at_delivery(apps, receiver, receiver.url)
    for attempt in delivery["log"]:
        assert "forbidden" in (attempt["error"] or "").lower(), attempt
    assert "forbidden" in delivery["lastError"].lower()


async def test_delivery_checks_what_a_name_resolves_to(apps: Apps, receiver: Receiver) -> None:
    delivery = await refused_at_delivery(apps, receiver, f"http://localhost:{receiver.port}/hook")
    # The log says why, as it does for an address literal.
    for attempt in delivery["log"]:
        assert "forbidden" in (attempt["error"] or "").lower(), attempt
    assert "forbidden" in delivery["lastError"].lower()


async def test_a_loopback_target_is_refused_with_the_setting_off(
    apps: Apps, receiver: Receiver
) -> None:
    """With `WEBHOOK_ALLOW_PRIVATE` off, the connection itself is refused (not only the
    URL when saved): the receiver on loopback gets nothing."""
    delivery = await refused_at_delivery(
        apps, receiver, f"http://[::ffff:127.0.0.1]:{receiver.port}/hook"
    )
    assert "forbidden" in delivery["lastError"].lower()
