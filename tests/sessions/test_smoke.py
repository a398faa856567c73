"""A first pass through the life of a mock session, in-process."""

from __future__ import annotations

from tests.fixtures.app import Api


async def test_session_reaches_ready_with_history(api: Api) -> None:
    created = await api.create_session("smoke")
    assert created["status"] in ("initializing", "qr_ready")
    ready = await api.wait_status("smoke", "ready")
    assert [h["status"] for h in ready["statusHistory"]] == [
        "created",
        "initializing",
        "qr_ready",
        "authenticated",
        "ready",
    ]
