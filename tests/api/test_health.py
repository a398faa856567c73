"""Liveness, readiness (each adapter's state) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any, cast

import pytest

from openwa import backlog, health
from openwa.api.metrics import Backlog
from openwa.services import Services
from tests.api.checks import assert_meta
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.fixtures.redis import DEAD_REDIS, LOCAL_REDIS, require_redis

ADAPTERS = ("database", "cache", "queue", "storage", "engines")


def readiness_body(response: Any) -> dict[str, Any]:
    body = assert_meta(response)
    assert isinstance(body["success"], bool)
    data = body["data"]
    for name in ADAPTERS:
        assert isinstance(data.get(name), dict), (name, data)
        assert data[name]["status"] in ("up", "down"), (name, data)
    return dict(data)


# --- liveness and readiness ------------------------------------------------------------------


async def test_health_is_200(api: Api) -> None:
    response = await api.request("GET", "/health", key=None)
    assert response.status_code == 200
    body = assert_meta(response)
    assert body["success"] is True
    assert body["data"]["status"] == "ok"


async def test_ready_with_every_adapter_up(api: Api) -> None:
    response = await api.request("GET", "/health/ready", key=None)
    assert response.status_code == 200, response.text
    data = readiness_body(response)
    assert response.json()["success"] is True
    for name in ADAPTERS:
        assert data[name]["status"] == "up", (name, data)


async def test_ready_is_503_when_the_cache_is_down(app_factory: AppFactory) -> None:
    api, manager = await app_factory.start(cache_type="redis", redis_url=DEAD_REDIS)
    try:
        response = await api.request("GET", "/health/ready", key=None)
        assert response.status_code == 503, response.text
        data = readiness_body(response)
        assert response.json()["success"] is False
        assert data["cache"]["status"] == "down"
        assert data["cache"].get("error"), data
        assert "Traceback" not in response.text
        for name in ("database", "queue", "storage", "engines"):
            assert data[name]["status"] == "up", (name, data)
        # Liveness does not depend on the adapters.
        assert (await api.request("GET", "/health", key=None)).status_code == 200
    finally:
        await AppFactory.stop(api, manager)


async def test_ready_never_shows_a_stores_credentials(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/health/ready` is open to anyone, and the S3 client quotes the URL it failed on,
    user info included: the answer masks it."""
    # The S3 client's own retries (about 2 s) end before the check's time does, even on
    # a busy machine: its error is the answer, not "no answer".
    monkeypatch.setattr(health, "_CHECK_TIMEOUT_S", 60.0)
    secret = "hunter2-topsecret"
    api, manager = await app_factory.start(
        storage_type="s3",
        s3_bucket="media",
        s3_endpoint=f"http://alice:{secret}@127.0.0.1:9",
        s3_access_key_id="AKIAEXAMPLEKEYID",
        s3_secret_access_key=secret,
    )
    try:
        response = await api.request("GET", "/health/ready", key=None)
    finally:
        await app_factory.stop(api, manager)
    assert response.status_code == 503, response.text
    data = readiness_body(response)
    assert data["storage"]["status"] == "down"
    assert "127.0.0.1:9" in data["storage"]["error"]  # it does quote the URL
    assert secret not in response.text
    assert "alice" not in response.text


async def test_ready_body_has_the_same_shape_up_or_down(app_factory: AppFactory) -> None:
    up, manager = await app_factory.start()
    try:
        good = (await up.request("GET", "/health/ready", key=None)).json()
    finally:
        await AppFactory.stop(up, manager)
    down, manager = await app_factory.start(cache_type="redis", redis_url=DEAD_REDIS)
    try:
        bad = (await down.request("GET", "/health/ready", key=None)).json()
    finally:
        await AppFactory.stop(down, manager)
    assert set(good) == set(bad)
    assert set(good["data"]) == set(bad["data"])
    assert set(good["meta"]) == set(bad["meta"])


async def test_ready_with_a_real_redis(app_factory: AppFactory) -> None:
    await require_redis()
    api, manager = await app_factory.start(cache_type="redis", redis_url=LOCAL_REDIS)
    try:
        response = await api.request("GET", "/health/ready", key=None)
        assert response.status_code == 200, response.text
        data = readiness_body(response)
        for name in ADAPTERS:
            assert data[name]["status"] == "up", (name, data)
        # Keys work through the Redis cache too, and a deleted key stops at once.
        created = await api.request("POST", "/api/keys", json={"name": "r", "role": "viewer"})
        assert created.status_code == 201
        key = created.json()["data"]["key"]
        assert (await api.request("GET", "/api/sessions", key=key)).status_code == 200
        assert (await api.request("GET", "/api/sessions", key=key)).status_code == 200
        key_id = created.json()["data"]["id"]
        assert (await api.request("DELETE", f"/api/keys/{key_id}")).status_code == 200
        assert (await api.request("GET", "/api/sessions", key=key)).status_code == 401
    finally:
        await AppFactory.stop(api, manager)


async def test_deployments_sharing_a_redis_never_share_a_cached_key(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    """Two deployments (databases) on one Redis, configured with the same API_KEY: each
    answers with its own key row, never with what the other cached for that key."""
    await require_redis()
    other = AppFactory(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", tmp_path / "other")
    first, first_manager = await app_factory.start(cache_type="redis", redis_url=LOCAL_REDIS)
    try:
        second, second_manager = await other.start(cache_type="redis", redis_url=LOCAL_REDIS)
        try:
            mine = assert_meta(await first.request("GET", "/api/keys/self"))["data"]
            answer = await second.request("GET", "/api/keys/self")
            assert answer.status_code == 200, answer.text
            theirs = assert_meta(answer)["data"]
            assert mine["id"] != theirs["id"]
            again = assert_meta(await first.request("GET", "/api/keys/self"))["data"]
            assert again["id"] == mine["id"]
        finally:
            await AppFactory.stop(second, second_manager)
    finally:
        await AppFactory.stop(first, first_manager)


async def test_a_database_made_again_is_not_answered_from_the_old_cached_key(
    tmp_path: Path,
) -> None:
    """A database dropped and made again under the same address, with Redis keeping what
    it cached of the old one: the API_KEY's new row is used at once."""
    await require_redis()
    path = tmp_path / "again.db"
    factory = AppFactory(f"sqlite+aiosqlite:///{path}", tmp_path / "again")
    ids = []
    for _ in range(2):
        path.unlink(missing_ok=True)
        api, manager = await factory.start(cache_type="redis", redis_url=LOCAL_REDIS)
        try:
            ids.append(assert_meta(await api.request("GET", "/api/keys/self"))["data"]["id"])
        finally:
            await AppFactory.stop(api, manager)
    assert ids[0] != ids[1]


async def test_api_still_answers_while_the_cache_is_down(app_factory: AppFactory) -> None:
    """A dead cache makes the instance not ready; requests must not turn into 500s."""
    api, manager = await app_factory.start(cache_type="redis", redis_url=DEAD_REDIS)
    try:
        response = await api.request("GET", "/api/sessions")
        assert response.status_code < 500 or response.status_code == 503, response.text
        assert "Traceback" not in response.text
        assert_meta(response)
    finally:
        await AppFactory.stop(api, manager)


# --- metrics ----------------------------------------------------------------------------------

SAMPLE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$"
)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    result = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE_RE.match(line)
        assert match, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        result.append((match["name"], labels, float(match["value"])))
    return result


def find(
    all_samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str
) -> list[float]:
    return [
        value
        for sample_name, sample_labels, value in all_samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    ]


async def metrics(api: Api) -> list[tuple[str, dict[str, str], float]]:
    response = await api.request("GET", "/metrics", key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def read_metrics(api: Api) -> list[tuple[str, dict[str, str], float]]:
    """A scrape that read the backlog: one whose database read ran past its time (a
    loaded CI machine) says NaN by design, and the next scrape reads it again."""
    for _ in range(10):
        found = await metrics(api)
        if not any(math.isnan(v) for v in find(found, "openwa_webhook_deliveries_pending")):
            return found
    raise AssertionError("ten scrapes in a row could not read the backlog")


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    await api.create_session("metered", autoStart=False)
    for _ in range(3):
        assert (await api.request("GET", "/api/sessions/metered")).status_code == 200
    assert (await api.request("GET", "/api/sessions/nosuch")).status_code == 404
    assert (await api.request("GET", "/api/sessions", key=None)).status_code == 401
    assert (await api.request("GET", "/api/no-such-route")).status_code == 404

    found = await metrics(api)
    total = "openwa_http_requests_total"
    assert find(found, total, method="GET", route="/api/sessions/{id}", status="200") == [3.0]
    assert find(found, total, method="GET", route="/api/sessions/{id}", status="404") == [1.0]
    assert find(found, total, method="GET", route="/api/sessions", status="401") == [1.0]
    assert find(found, total, method="POST", route="/api/sessions", status="201") == [1.0]
    # No raw paths as labels: ids and names would make the label set unbounded.
    routes = {labels.get("route") for name, labels, _ in found if name == total}
    assert not any(route and ("metered" in route or "nosuch" in route) for route in routes), routes
    assert not any(route and "no-such-route" in route for route in routes), routes

    duration = "openwa_http_request_duration_seconds"
    counts = find(found, duration + "_count", method="GET", route="/api/sessions/{id}")
    assert counts == [4.0]
    assert find(found, duration + "_bucket", method="GET", route="/api/sessions/{id}", le="+Inf")
    assert find(found, duration + "_sum", method="GET", route="/api/sessions/{id}")


async def test_metrics_count_sessions_by_status(api: Api) -> None:
    await api.create_session("idle", autoStart=False)
    await api.create_session("live")
    await api.wait_status("live", "ready")
    found = await metrics(api)
    assert find(found, "openwa_sessions", status="ready") == [1.0]
    assert find(found, "openwa_sessions", status="created") == [1.0]

    assert (await api.request("POST", "/api/sessions/live/stop")).status_code == 200
    found = await metrics(api)
    assert find(found, "openwa_sessions", status="stopped") == [1.0]
    assert find(found, "openwa_sessions", status="ready") in ([], [0.0])


async def test_metrics_count_errors_too(api: Api) -> None:
    assert (await api.request("PUT", "/api/sessions")).status_code == 405
    assert (await api.request("POST", "/api/sessions", json=[])).status_code == 400
    found = await metrics(api)
    total = "openwa_http_requests_total"
    assert find(found, total, method="POST", route="/api/sessions", status="400") == [1.0]
    assert sum(find(found, total, method="PUT", status="405")) == 1.0


async def test_readiness_is_checked_once_for_callers_at_the_same_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`/health/ready` is open to anyone and each check writes to storage: callers at
    the same time share one check, and one made within a second is reused; a caller
    that goes away does not cancel the others' check."""
    runs = 0
    release = asyncio.Event()

    async def counted(_services: object) -> health.Checks:
        nonlocal runs
        runs += 1
        await release.wait()
        return True, {"database": {"status": "up"}}

    monkeypatch.setattr(health, "readiness", counted)
    shared = health.SharedReadiness(cast(Services, None))
    callers = [asyncio.create_task(shared()) for _ in range(10)]
    await asyncio.sleep(0)
    callers[0].cancel()
    release.set()
    results = await asyncio.gather(*callers[1:])
    assert runs == 1
    assert all(result == (True, {"database": {"status": "up"}}) for result in results)
    await shared()
    assert runs == 1  # within a second: the same answer
    monkeypatch.setattr(health, "READY_FRESH_S", 0.0)
    await shared()
    assert runs == 2


async def test_scrapes_at_the_same_time_share_one_database_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/metrics` is open by default: a flood of scrapes reads the database once at a
    time, and a scrape after that read reads again (nothing stale is kept)."""
    reads = 0
    release = asyncio.Event()
    read_backlog = backlog.read_backlog

    async def counted(*args: Any) -> Backlog:
        nonlocal reads
        reads += 1
        await release.wait()
        return await read_backlog(*args)

    monkeypatch.setattr(backlog, "read_backlog", counted)
    shared = api.app.state.scrape_reads
    scrapes = [asyncio.create_task(metrics(api)) for _ in range(10)]
    await wait_for(lambda: asyncio.sleep(0, shared.waiting), lambda n: n == 10, 20, "scrapes")
    release.set()
    for found in await asyncio.gather(*scrapes):
        assert find(found, "openwa_webhook_deliveries_pending") == [0.0]
    assert reads == 1
    await metrics(api)
    assert reads == 2
