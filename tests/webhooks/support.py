"""Helpers of the webhook tests (not a test module).

Signatures are checked only with the third-party `standardwebhooks` package, the way a
receiver would, never with OpenWA's own signing code.
"""

from __future__ import annotations

import base64
import secrets
from itertools import count
from typing import Any

import httpx
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.fixtures.app import Api, wait_for
from tests.webhooks.receiver import Received

SENDER = "+1 555 0100 200"
_names = count(1)


def new_secret(size: int = 32) -> str:
    """A valid Standard Webhooks secret, made here."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()


def verifies(secret: str, request: Received) -> bool:
    """Whether the standardwebhooks library accepts the request with `secret`."""
    try:
        StandardWebhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def error_of(response: httpx.Response, status: int, code: str, case: object = None) -> Any:
    assert response.status_code == status, (case, response.text)
    body = response.json()
    assert body["success"] is False, (case, body)
    assert body["error"]["code"] == code, (case, body)
    return body["error"]


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


async def ready_session(api: Api, name: str | None = None, **body: Any) -> dict[str, Any]:
    """A new mock session, waited for until `ready`; returns the create response's data."""
    created = await api.create_session(name or f"hooks-{next(_names)}", engine="mock", **body)
    await api.wait_status(created["id"], "ready")
    return created


def hooks_path(session_id: str | None) -> str:
    return "/api/webhooks" if session_id is None else f"/api/sessions/{session_id}/webhooks"


async def register(api: Api, session_id: str | None, url: str, **body: Any) -> dict[str, Any]:
    """A webhook (of a session, or instance-wide with None); its data with the secret."""
    response = await api.request("POST", hooks_path(session_id), json={"url": url, **body})
    data: dict[str, Any] = data_of(response, 201)
    return data


async def inbound(api: Api, session_id: str, text: str, sender: str = SENDER) -> str:
    """An inbound message (a `message.received` event); its message id."""
    response = await api.request(
        "POST", f"/api/sessions/{session_id}/mock/inbound", json={"from": sender, "text": text}
    )
    message_id: str = data_of(response, 202)["id"]
    return message_id


async def deliveries(api: Api, session_id: str | None, webhook_id: str) -> list[dict[str, Any]]:
    """The webhook's delivery log, oldest first."""
    response = await api.request(
        "GET", f"{hooks_path(session_id)}/{webhook_id}/deliveries", params={"limit": 100}
    )
    items: list[dict[str, Any]] = data_of(response)
    return sorted(items, key=lambda d: d["id"])


async def wait_deliveries(
    api: Api,
    session_id: str | None,
    webhook_id: str,
    done: Any,
    timeout: float = 15.0,
    what: str = "deliveries",
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await wait_for(
        lambda: deliveries(api, session_id, webhook_id), done, timeout, what
    )
    return result


async def received_events(api: Api, session_id: str, event: str) -> list[dict[str, Any]]:
    response = await api.request(
        "GET", "/api/events", params={"sessions": session_id, "events": event, "limit": 100}
    )
    items: list[dict[str, Any]] = data_of(response)["events"]
    return items


def message_ids(requests: list[Received]) -> list[str]:
    """The message ids (data.id) of `message.received` requests, in arrival order."""
    return [r.payload["data"]["id"] for r in requests if r.event == "message.received"]


def first_seen(values: list[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
