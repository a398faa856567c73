"""A whatsmeow session moves between instances without a scan: its device lives in the
shared PostgreSQL store (`whatsmeow_*` tables), so the instance that takes the session
over resumes the same device, up to the network's edge (a loopback proxy that never
answers: this machine has no route to WhatsApp).

Two apps in this process stand for two instances on one database, Redis and S3 bucket,
each with its own whatsmeow worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openwa.engines.base import SendFailed
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import (
    DEVICE_JID,
    PHONE,
    client_of,
    link,
    plant_device,
    started,
)
from tests.fixtures.app import AppFactory, wait_for
from tests.fixtures.redis import LOCAL_REDIS, require_redis
from tests.fixtures.s3 import S3Server
from tests.sessions.support import statuses

pytestmark = pytest.mark.postgres


async def test_a_linked_device_resumes_on_the_instance_that_takes_the_session_over(
    postgres_url: str,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    silent: SilentProxy,
) -> None:
    await require_redis()
    shared = {
        "engine_type": "whatsmeow",
        "cluster_secret": "a-cluster-secret-for-tests",
        "cache_type": "redis",
        "redis_url": LOCAL_REDIS,
        "storage_type": "s3",
        "s3_endpoint": s3_server.endpoint,
        "s3_bucket": s3_bucket,
        "s3_access_key_id": s3_server.access_key,
        "s3_secret_access_key": s3_server.secret_key,
        "session_lease_s": 3,
        "proxy_allow_private": True,  # the loopback proxy
    }
    first = AppFactory(postgres_url, tmp_path / "a")
    second = AppFactory(postgres_url, tmp_path / "b")
    a, a_manager = await first.start(instance_id="wm-a", **shared)
    b, b_manager = await second.start(instance_id="wm-b", **shared)
    try:
        session_id = await started(a, proxy=silent.url)
        await link(a, session_id)
        location = (await (await client_of(a, session_id)).describe())["location"]
        assert location.startswith("postgres")  # the shared store, not a file of A's
        # What whatsmeow itself saves when a real phone scans: the device and its keys.
        await plant_device(location, DEVICE_JID)
    finally:
        await AppFactory.stop(a, a_manager)  # A leaves: its session's lease is free
    try:
        client = await client_of(b, session_id)  # B has taken it over

        async def describe() -> dict[str, Any]:
            try:
                return await client.describe()
            except SendFailed:  # B's worker is still starting
                return {"connecting": False}

        described = await wait_for(describe, lambda d: d["connecting"], 30, "resume")
        assert described["jid"] == DEVICE_JID
        assert described["proxy"] == silent.url
        session = await b.session(session_id)
        assert session["phoneNumber"] == PHONE
        moved = statuses(session)
        assert "qr_ready" not in moved[moved.index("stopped") :]  # no scan on B
        leases = (await b.request("GET", "/api/cluster")).json()["data"]
        owner = [
            i["id"] for i in leases["instances"] if session_id in {s["id"] for s in i["sessions"]}
        ]
        assert owner == ["wm-b"]
    finally:
        await AppFactory.stop(b, b_manager)
