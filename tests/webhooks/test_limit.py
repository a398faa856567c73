"""WEBHOOK_MAX_PER_SESSION: a session's webhooks (config ones included) and the
instance-wide ones are bounded, since every event goes to each of them."""

from __future__ import annotations

import asyncio

from tests.fixtures.app import Api
from tests.webhooks.conftest import Apps
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import data_of, error_of, hooks_path, register

LIMIT = 10


async def _count(api: Api, session_id: str | None) -> int:
    response = await api.request("GET", hooks_path(session_id), params={"limit": 100})
    total: int = response.json()["pagination"]["total"]
    return total


async def test_a_session_and_the_instance_hold_at_most_the_limit(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_per_session=LIMIT)
    session = await api.create_session("bounded-hooks", engine="mock")
    for owner in (session["id"], None):
        made = [await register(api, owner, f"{receiver.base}/{i}") for i in range(LIMIT)]
        response = await api.request("POST", hooks_path(owner), json={"url": receiver.url})
        error = error_of(response, 409, "WEBHOOK_LIMIT_REACHED", owner)
        assert error["details"] == {"limit": LIMIT, "registered": LIMIT, "after": LIMIT + 1}
        assert await _count(api, owner) == LIMIT
        # A place freed is a place to take.
        path = f"{hooks_path(owner)}/{made[0]['id']}"
        data_of(await api.request("DELETE", path))
        await register(api, owner, receiver.url)


async def test_config_webhooks_count_and_a_refused_update_changes_nothing(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_per_session=LIMIT)
    config = {"webhooks": [{"url": f"{receiver.base}/c{i}"} for i in range(4)]}
    session = data_of(
        await api.request(
            "POST",
            "/api/sessions",
            json={"name": "config-hooks", "engine": "mock", "config": config},
        ),
        201,
    )
    # Status changes fan out to the config webhooks: the PATCHes below come after them
    # (a PATCH that loses a deadlock with one is a 503 to retry, not what this tests).
    await api.wait_status(session["id"], "ready")
    for i in range(LIMIT - 4):
        await register(api, session["id"], f"{receiver.base}/a{i}")
    error_of(
        await api.request("POST", hooks_path(session["id"]), json={"url": receiver.url}),
        409,
        "WEBHOOK_LIMIT_REACHED",
    )

    # Replacing the four config webhooks by four others fits; by five does not.
    path = f"/api/sessions/{session['id']}"
    four = {"webhooks": [{"url": f"{receiver.base}/d{i}"} for i in range(4)]}
    data_of(await api.request("PATCH", path, json={"config": four}))
    five = {"webhooks": [{"url": f"{receiver.base}/e{i}"} for i in range(5)]}
    error_of(await api.request("PATCH", path, json={"config": five}), 409, "WEBHOOK_LIMIT_REACHED")
    listed = data_of(await api.request("GET", hooks_path(session["id"]), params={"limit": 100}))
    config_urls = sorted(h["url"] for h in listed if h["source"] == "config")
    assert config_urls == [f"{receiver.base}/d{i}" for i in range(4)]


async def test_concurrent_creates_never_pass_the_limit(apps: Apps, receiver: Receiver) -> None:
    api = await apps.start(webhook_max_per_session=LIMIT)
    session = await api.create_session("racing-hooks", engine="mock")
    for owner in (session["id"], None):
        for i in range(LIMIT - 2):
            await register(api, owner, f"{receiver.base}/{i}")
        answers = await asyncio.gather(
            *(
                api.request("POST", hooks_path(owner), json={"url": f"{receiver.base}/r{i}"})
                for i in range(8)
            )
        )
        assert sorted(a.status_code for a in answers) == [201, 201] + [409] * 6, [
            a.text for a in answers
        ]
        assert await _count(api, owner) == LIMIT


async def test_an_owner_over_a_lowered_limit_may_shrink_but_not_grow(
    apps: Apps, receiver: Receiver
) -> None:
    api = await apps.start(webhook_max_per_session=LIMIT + 2)
    config = {"webhooks": [{"url": f"{receiver.base}/c{i}"} for i in range(4)]}
    session = data_of(
        await api.request(
            "POST", "/api/sessions", json={"name": "lowered", "engine": "mock", "config": config}
        ),
        201,
    )
    for i in range(LIMIT - 2):
        await register(api, session["id"], f"{receiver.base}/a{i}")
    await apps.stop(api)

    api = await apps.start(webhook_max_per_session=LIMIT)
    await api.wait_status(session["id"], "ready")  # restored: its status changes are over
    path = f"/api/sessions/{session['id']}"

    def urls(n: int, tag: str) -> dict[str, object]:
        return {"webhooks": [{"url": f"{receiver.base}/{tag}{i}"} for i in range(n)]}

    # 12 held against 10: rewriting the config as long, or shorter, passes.
    data_of(await api.request("PATCH", path, json={"config": urls(4, "d")}))
    data_of(await api.request("PATCH", path, json={"config": urls(3, "e")}))
    assert await _count(api, session["id"]) == LIMIT + 1
    # Growing does not: neither a new webhook nor a longer config.
    error_of(
        await api.request("POST", hooks_path(session["id"]), json={"url": receiver.url}),
        409,
        "WEBHOOK_LIMIT_REACHED",
    )
    error = error_of(
        await api.request("PATCH", path, json={"config": urls(4, "f")}),
        409,
        "WEBHOOK_LIMIT_REACHED",
    )
    assert error["details"] == {"limit": LIMIT, "registered": LIMIT + 1, "after": LIMIT + 2}
    assert await _count(api, session["id"]) == LIMIT + 1
