"""A WebSocket client gone before its handshake ends leaves no subscription behind: the
event bus would otherwise hold it until it overflowed (and, while it did, the event pump
would load every event for nobody)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from openwa.api import ws
from tests.fixtures.app import Api


class _GoneBeforeAccept:
    """What uvicorn's WebSocket does when the client left during the handshake."""

    scope: dict[str, Any] = {"subprotocols": []}

    async def accept(self, subprotocol: str | None = None) -> None:
        raise WebSocketDisconnect(code=1006)


async def test_a_client_gone_at_the_accept_leaves_no_subscription(api: Api) -> None:
    services = api.services
    assert not services.bus.has_subscribers()
    with pytest.raises(WebSocketDisconnect):
        await ws._serve(cast(WebSocket, _GoneBeforeAccept()), services, cast(Any, None), None, None)
    assert not services.bus.has_subscribers()
