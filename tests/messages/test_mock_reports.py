"""`POST /api/sessions/{id}/mock/report` over HTTP: a server refusal fails a sent message
with `SERVER_REFUSED`; bodies are typed by `kind` and refused clearly; inbound messages
take the contract's message types. (Each kind's effect: tests/engines/test_behaviour.py
and tests/messages/test_report_kinds.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.app import Api, AppFactory
from tests.messages.support import (
    data_of,
    error_of,
    plus,
    ready_pair,
    send_text,
    wait_message,
    wait_sent,
)


@pytest.fixture
async def api(app_factory: AppFactory) -> AsyncIterator[Api]:
    # No acks from the mock network: a sent message stays `sent`.
    async with app_factory.running(mock_ack_delay_ms=600_000) as started:
        yield started


async def report(api: Api, session: str, body: dict[str, Any]) -> Any:
    return await api.request("POST", f"/api/sessions/{session}/mock/report", json=body)


async def test_a_server_refusal_and_what_is_refused(api: Api) -> None:
    alice, bob = await ready_pair(api)
    sent = await send_text(api, alice["id"], plus(bob), "refused")
    await wait_sent(api, alice["id"], sent["id"])
    answer = await report(api, alice["id"], {"kind": "server_error", "messageId": sent["id"]})
    assert data_of(answer, 202) == {"kind": "server_error", "id": None}
    failed = await wait_message(api, alice["id"], sent["id"], "failed")
    assert failed["errorCode"] == "SERVER_REFUSED"

    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "teleport", "from": "+1 555 0100 200"}, 400, "VALIDATION_ERROR"),
        (
            {"kind": "presence", "from": "+1 555 0100 200", "presence": "asleep"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"kind": "edit", "from": "not a number", "messageId": "x", "text": "t"},
            400,
            "INVALID_CHAT_ID",
        ),
        (
            {"kind": "read_self", "chatId": "+1 555 0100 200", "messageIds": []},
            400,
            "VALIDATION_ERROR",
        ),
        ({"kind": "call", "from": "+1 555 0100 200", "extra": 1}, 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in bad:
        error_of(await report(api, alice["id"], body), status, code, body)

    idle = await api.create_session("idle", autoStart=False)
    call = {"kind": "call", "from": "+1 555 0100 200"}
    error_of(await report(api, idle["id"], call), 409, "SESSION_NOT_READY")

    for type_ in ("live_location", "poll", "button_reply", "undecryptable"):
        body = {"from": "+1 555 0100 200", "type": type_, "text": type_}
        response = await api.request("POST", f"/api/sessions/{bob['id']}/mock/inbound", json=body)
        assert response.status_code == 202, response.text
    body = {"from": "+1 555 0100 200", "type": "hologram"}
    response = await api.request("POST", f"/api/sessions/{bob['id']}/mock/inbound", json=body)
    error_of(response, 400, "VALIDATION_ERROR")
