"""Helpers of the webhook tests (not a test module).

Signatures are checked only with the third-party `standardwebhooks` package, the way a
receiver would, never with OpenWA's own signing code.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import httpx
from sqlalchemy import ColumnElement, func, select
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from openwa.db.models.webhook import DeliveryRow
from tests.fixtures.app import Api, wait_for
from tests.webhooks.receiver import Received

SENDER = "+1 555 0100 200"
_names = count(1)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request off a raw connection (for receivers that misbehave on
    purpose): its head, returned, and its body (by Content-Length), read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


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


def all_succeeded(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    """A `wait_deliveries` condition: `n` deliveries, every one of them succeeded."""
    return lambda ds: len(ds) == n and {d["status"] for d in ds} == {"succeeded"}


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


@dataclass(frozen=True)
class Delivered:
    """One inbound message delivered to a new webhook of a new session."""

    session: dict[str, Any]
    hook: dict[str, Any]
    message_id: str
    delivery: dict[str, Any]

    def retry_path(self) -> str:
        base = f"{hooks_path(self.session['id'])}/{self.hook['id']}/deliveries"
        return f"{base}/{self.delivery['id']}/retry"


async def delivered_once(api: Api, url: str, text: str) -> Delivered:
    session = await ready_session(api)
    hook = await register(api, session["id"], url, events=["message.received"])
    message_id = await inbound(api, session["id"], text)
    [delivery] = await wait_deliveries(
        api,
        session["id"],
        hook["id"],
        lambda ds: len(ds) == 1 and ds[0]["status"] == "succeeded",
        what="the first delivery",
    )
    return Delivered(session, hook, message_id, delivery)


async def failed_for_good(api: Api, session_id: str, webhook_id: str, url: str) -> Any:
    """The webhook's one delivery, once it has failed for good and the app has settled."""
    [delivery] = await wait_deliveries(
        api,
        session_id,
        webhook_id,
        lambda ds: len(ds) == 1 and ds[0]["status"] == "failed",
        what=f"the delivery to {url} to fail",
    )
    await settled(api)
    return delivery


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


async def _count_deliveries(api: Api, where: ColumnElement[bool]) -> int:
    async with api.services.db() as db:
        found = await db.scalar(select(func.count()).select_from(DeliveryRow).where(where))
    return int(found or 0)


async def settled(api: Api, timeout: float = 15.0) -> None:
    """Every delivery of the events so far has ended, and the worker finds nothing to do.

    From here no request reaches a receiver until something new happens: a receiver
    records a request on arrival, and a delivery ends only after its answer. This is
    what a negative check ("nothing else arrived") waits for instead of a sleep.
    """

    async def unfinished() -> int:
        # An event logged just now may not be fanned out into deliveries yet: the worker
        # finding nothing to do is part of being settled, not a separate assert.
        pending = await _count_deliveries(api, DeliveryRow.status == "pending")
        return pending or await api.services.deliveries.run_once()

    await wait_for(unfinished, lambda n: n == 0, timeout, "every delivery to end")


async def idle(api: Api, timeout: float = 15.0) -> None:
    """No delivery attempt is under way, and the worker claims nothing that is due now.

    Pending deliveries may stay (those of an inactive webhook, or retries not yet due).
    """
    await wait_for(
        lambda: _count_deliveries(api, DeliveryRow.locked_until.is_not(None)),
        lambda n: n == 0,
        timeout,
        "no delivery attempt under way",
    )
    assert await api.services.deliveries.run_once() == 0


async def logged(api: Api, session_id: str, message_id: str, timeout: float = 15.0) -> None:
    """Wait until the inbound message's `message.received` is in the event log.

    Its deliveries (if any) are written in the same transaction as the event.
    """
    await wait_for(
        lambda: received_events(api, session_id, "message.received"),
        lambda events: message_id in [e["data"]["id"] for e in events],
        timeout,
        f"{message_id} in the event log",
    )
