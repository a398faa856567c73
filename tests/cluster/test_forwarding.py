"""Any instance serves any route: live calls are forwarded to the session's owner.

Two real server processes (`openwa serve`) on one PostgreSQL database, one Redis and one
S3 bucket (the test radosgw), with CLUSTER_SECRET. A runs the sessions; B forwards to
A's INSTANCE_URL, which is a TCP relay in front of A, so that "the owner does not
answer" is a relay that refuses connections while A runs on and keeps its leases. B
takes one session at most (MAX_SESSIONS=1), so that a create there goes to A.

Clients connect from distinct loopback addresses (127.0.0.2, 127.0.0.3) to tell
whose address an instance used; B reaches A from 127.0.0.1 through the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from openwa.api.forwarding import proof
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.databases import PgPool, pg_url, require_postgres
from tests.fixtures.redis import LOCAL_REDIS, require_redis
from tests.fixtures.s3 import S3Server
from tests.fixtures.server import ServerProcess, free_port, is_openwa_health

pytestmark = [pytest.mark.in_order, pytest.mark.postgres, pytest.mark.e2e]

SECRET = "cluster-secret-" + secrets.token_hex(8)
ALLOWED = "127.0.0.2"
OTHER = "127.0.0.3"
PHONE = "+62 812-3456-7890"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f4f3a60000000049454e44ae426082"
)


class Relay:
    """A TCP relay in front of an instance, given to the others as its INSTANCE_URL.
    `close` makes the instance unreachable to them while it runs on; it runs on a thread
    of its own so that the (synchronous) test can use it at any time."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        self._call(self._start())

    def close(self) -> None:
        self._call(self._stop())

    def shutdown(self) -> None:
        self.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}
            writer.close()
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.close()


@dataclass
class Cluster:
    a: ServerProcess
    b: ServerProcess
    relay: Relay
    # Sessions on A, created before B started: one for each test that changes its own.
    lifecycle: str
    calls: str

    def client(
        self, server: ServerProcess, key: str | None = ADMIN_KEY, source: str = "127.0.0.1"
    ) -> httpx.Client:
        """A client of `server` connecting from the loopback address `source`."""
        transport = httpx.HTTPTransport(local_address=source)
        return server.client(key, transport=transport)

    def new_key(self, role: str, cidrs: list[str] | None = None) -> tuple[str, str]:
        """(id, key) of a new key, made on A."""
        body: dict[str, Any] = {"name": f"{role} key", "role": role}
        if cidrs is not None:
            body["allowedCidrs"] = cidrs
        with self.client(self.a) as http:
            response = http.post("/api/keys", json=body)
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        return data["id"], data["key"]


def until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """Poll `fetch` until `done` says yes, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value!r}")
        time.sleep(0.05)
        value = fetch()
    return value


def _await_health(*servers: ServerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting:
        server = waiting[0]
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not start:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if is_openwa_health(httpx.get(server.url + "/health", timeout=1)):
                waiting.pop(0)
                continue
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(
    pg_pool: PgPool,
    pg_template: str,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    require_postgres()
    asyncio.run(require_redis())
    database = pg_pool.take(pg_template)
    bucket = "openwa-fw-" + secrets.token_hex(6)
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    base = tmp_path_factory.mktemp("forwarding")
    shared = {
        "CLUSTER_SECRET": SECRET,
        "CACHE_TYPE": "redis",
        "REDIS_URL": LOCAL_REDIS,
        # Counters of this module alone, whatever else shares the Redis server.
        "RATE_LIMIT_NAMESPACE": "openwa-fw-" + secrets.token_hex(6),
        "RATE_LIMIT_VIEWER": "3/hour",
        "STORAGE_TYPE": "s3",
        "S3_ENDPOINT": s3_server.endpoint,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": s3_server.access_key,
        "S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "S3_REGION": s3_server.region,
        "S3_FORCE_PATH_STYLE": "true",
        "SESSION_LEASE_S": "3",
        # Sessions wait in `qr_ready` for a pairing code or a scan.
        "MOCK_AUTH_DELAY_MS": "60000",
        "MOCK_ACK_DELAY_MS": "50",
    }
    a = ServerProcess(pg_url(database), base / "a" / "data", INSTANCE_ID="inst-a", **shared)
    relay = Relay(a.port)
    a.extra_env["INSTANCE_URL"] = relay.url
    b = ServerProcess(
        pg_url(database), base / "b" / "data", INSTANCE_ID="inst-b", MAX_SESSIONS="1", **shared
    )
    b.extra_env["INSTANCE_URL"] = b.url
    try:
        relay.open()
        a.launch()
        b.launch()
        _await_health(a, b)
        with a.client() as http:
            made = [
                http.post("/api/sessions", json={"name": name}) for name in ("lifecycle", "calls")
            ]
        assert all(r.status_code == 201 for r in made), [r.text for r in made]
        ids = [r.json()["data"]["id"] for r in made]
        with b.client() as http:
            # B's session directory hears of A's new rows over Redis, and its next look at
            # the leases (every second) that A runs them: until then B answers live calls
            # as for a session nobody runs.
            for session in ids:
                until(
                    lambda s=session: http.get(f"/api/sessions/{s}/contacts/check/6281234567890"),
                    lambda r: r.headers.get("x-openwa-served-by") == "inst-a",
                )
        yield Cluster(a, b, relay, *ids)
    finally:
        for server in (b, a):
            server.stop(signal.SIGKILL)
        relay.shutdown()
        pg_pool.give_back(database)
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if listed:
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]}
            )
        s3.delete_bucket(Bucket=bucket)


def _forwarded(response: httpx.Response, by: str = "inst-a") -> dict[str, Any]:
    """The data of an answer another instance served, after checking that it did."""
    assert response.headers.get("x-openwa-served-by") == by, response.text
    assert response.is_success, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _status(cluster: Cluster, session: str) -> str:
    """The session's status as its owner A last wrote it."""
    with cluster.client(cluster.a) as http:
        status: str = http.get(f"/api/sessions/{session}").json()["data"]["status"]
    return status


def test_live_calls_on_b_are_answered_by_the_owner(cluster: Cluster) -> None:
    s = f"/api/sessions/{cluster.lifecycle}"
    until(lambda: _status(cluster, cluster.lifecycle), lambda status: status == "qr_ready")
    with cluster.client(cluster.b) as b, cluster.client(cluster.a) as a:
        paired = b.post(
            f"{s}/pairing-code", json={"phoneNumber": PHONE}, headers={"X-Request-Id": "fw-1"}
        )
        assert set(_forwarded(paired)) == {"code"}
        # The request id is the client's on both instances (the owner echoes it too).
        assert paired.headers["x-request-id"] == "fw-1"
        assert paired.json()["meta"]["requestId"] == "fw-1"

        _forwarded(b.post(f"{s}/mock/scan"))
        until(lambda: _status(cluster, cluster.lifecycle), lambda status: status == "ready")

        checked = _forwarded(b.get(f"{s}/contacts/check/6281234567890"))
        assert checked == a.get(f"{s}/contacts/check/6281234567890").json()["data"]

        inbound = b.post(f"{s}/mock/inbound", json={"from": "6281234567890", "text": "hi"})
        assert inbound.status_code == 202
        assert set(_forwarded(inbound)) == {"id"}

        # A send is not forwarded: B accepts it into the outbox and A sends it, media too.
        sent = b.post(f"{s}/messages/text", json={"chatId": "6281234567890", "text": "hello"})
        assert sent.status_code == 202, sent.text
        assert "x-openwa-served-by" not in sent.headers
        upload = b.post(
            f"{s}/messages/media",
            data={"chatId": "6281234567890", "type": "image"},
            files={"file": ("dot.png", PNG, "image/png")},
        )
        assert upload.status_code == 202, upload.text
        assert "x-openwa-served-by" not in upload.headers
        for message in (sent.json()["data"]["id"], upload.json()["data"]["id"]):
            until(
                lambda m=message: a.get(f"{s}/messages/{m}").json()["data"]["status"],
                lambda status: status in ("sent", "delivered", "read"),
            )

        revoked = b.delete(f"{s}/messages/{sent.json()['data']['id']}")
        assert _forwarded(revoked)["id"] == sent.json()["data"]["id"]

        # Stopped through B, on A; started again through B: B runs it now, A forwards.
        assert _forwarded(b.post(f"{s}/stop"))["status"] == "stopped"
        started = b.post(f"{s}/start")
        assert started.status_code == 200, started.text
        assert "x-openwa-served-by" not in started.headers
        until(lambda: b.get(f"{s}/contacts/check/6281234567890"), lambda r: r.is_success)
        # A learns the new owner on its next look at the leases (every second).
        moved = until(
            lambda: a.get(f"{s}/contacts/check/6281234567890"),
            lambda r: r.status_code != 409,
        )
        _forwarded(moved, by="inst-b")

        # B is full now (MAX_SESSIONS=1): a create through B is made on A, which has room.
        created = b.post("/api/sessions", json={"name": "made-on-a"})
        assert created.status_code == 201
        assert _forwarded(created)["name"] == "made-on-a"


def test_owner_sees_the_original_client_for_audit_and_key_networks(cluster: Cluster) -> None:
    s = f"/api/sessions/{cluster.calls}"
    key_id, key = cluster.new_key("operator", cidrs=[f"{ALLOWED}/32"])
    with cluster.client(cluster.a) as a:
        a.post(f"{s}/mock/scan")
    until(lambda: _status(cluster, cluster.calls), lambda status: status == "ready")
    inbound = {"from": "6281234567890", "text": "via B"}
    # A sees B's connection come from 127.0.0.1 (the relay): outside the key's networks.
    with cluster.client(cluster.b, key, source=ALLOWED) as b:
        answer = b.post(f"{s}/mock/inbound", json=inbound, headers={"X-Request-Id": "fw-audit"})
    _forwarded(answer)
    with cluster.client(cluster.b, key, source=OTHER) as b:
        refused = b.post(f"{s}/mock/inbound", json=inbound)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "FORBIDDEN"

    with cluster.client(cluster.b) as b:
        entries = b.get("/api/audit", params={"keyId": key_id, "limit": 100}).json()["data"]
    calls = [
        (e["action"], e["address"], e["outcome"], e["status"])
        for e in entries
        if e["requestId"] == "fw-audit"
    ]
    # One entry for the call, written by A (B leaves it to the instance that served it),
    # and the key's first use from the client's address, once for both instances.
    assert sorted(calls) == [
        ("key_first_use", ALLOWED, "ok", None),
        ("mock_inbound", ALLOWED, "ok", 202),
    ]


def test_forwarded_calls_are_not_counted_twice_against_rate_limits(cluster: Cluster) -> None:
    _, viewer = cluster.new_key("viewer")  # 3 an hour (RATE_LIMIT_VIEWER)
    path = f"/api/sessions/{cluster.calls}/contacts/check/6281234567890"
    with cluster.client(cluster.b, viewer) as b:
        for _ in range(3):
            _forwarded(b.get(path))
        limited = b.get(path)
    assert limited.status_code == 429
    assert "x-openwa-served-by" not in limited.headers


def _signed(
    method: str,
    target: str,
    body: bytes,
    *,
    client: str = ALLOWED,
    at: int | None = None,
    secret: str = SECRET,
    signed_body: bytes | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Forwarding headers as instance B would send them (the proof made by the same
    function the server uses), or with one part wrong."""
    stamp = str(int(time.time()) if at is None else at)
    nonce = secrets.token_hex(16) if nonce is None else nonce
    return {
        "X-OpenWA-Forwarded-By": "inst-b",
        "X-OpenWA-Forwarded-For": client,
        "X-OpenWA-Forwarded-At": stamp,
        "X-OpenWA-Forwarded-Nonce": nonce,
        "X-OpenWA-Forwarded-Proof": proof(
            secret.encode(),
            at=stamp,
            nonce=nonce,
            method=method,
            target=target,
            client=client,
            instance="inst-b",
            body=body if signed_body is None else signed_body,
        ),
        "Content-Type": "application/json",
    }


def test_forwarding_headers_count_only_with_a_valid_proof(cluster: Cluster) -> None:
    """A client at 127.0.0.3 claims, straight to A, to be forwarded for 127.0.0.2 (the
    key's only network): only a proof made with CLUSTER_SECRET over this very request,
    and fresh, makes A take that address."""
    _, key = cluster.new_key("operator", cidrs=[f"{ALLOWED}/32"])
    target = f"/api/sessions/{cluster.calls}/mock/inbound"
    body = orjson.dumps({"from": "6281234567890", "text": "claimed"})
    wrong = {
        "no proof": {
            k: v
            for k, v in _signed("POST", target, body).items()
            if k != "X-OpenWA-Forwarded-Proof"
        },
        "bad proof": {**_signed("POST", target, body), "X-OpenWA-Forwarded-Proof": "v1=00"},
        "other secret": _signed("POST", target, body, secret="another-secret-0123456789"),
        "other body": _signed("POST", target, body, signed_body=b"{}"),
        "other address": {
            **_signed("POST", target, body, client=OTHER),
            "X-OpenWA-Forwarded-For": ALLOWED,
        },
        "stale": _signed("POST", target, body, at=int(time.time()) - 120),
        "no nonce": {
            k: v
            for k, v in _signed("POST", target, body).items()
            if k != "X-OpenWA-Forwarded-Nonce"
        },
        "a nonce not of ours": _signed("POST", target, body, nonce="not-hex"),
    }
    with cluster.client(cluster.a, key, source=OTHER) as a:
        for name, headers in wrong.items():
            response = a.post(target, content=body, headers=headers)
            assert response.status_code == 403, (name, response.text)
        signed = _signed("POST", target, body)
        good = a.post(target, content=body, headers=signed)
        # A proof seen on the wire is good once, here or on any other instance.
        again = a.post(target, content=body, headers=signed)
        # A valid proof vouches for the address, never for the key: it is checked again.
        unknown = {**_signed("POST", target, body), "X-API-Key": "unknown-key-0123456789abcdef"}
        stranger = a.post(target, content=body, headers=unknown)
    with cluster.client(cluster.b, key, source=OTHER) as b:
        elsewhere = b.post(target, content=body, headers=signed)
    assert good.status_code == 202, good.text
    assert stranger.status_code == 401, stranger.text
    for replayed in (again, elsewhere):
        assert replayed.status_code == 403, replayed.text


def test_a_forwarded_call_is_never_forwarded_again(cluster: Cluster) -> None:
    """B gets a call forwarded (validly) for a session A runs: it answers the 409 itself."""
    target = f"/api/sessions/{cluster.calls}/contacts/check/6281234567890"
    with cluster.client(cluster.b) as b:
        response = b.get(target, headers=_signed("GET", target, b""))
        # A client's own forwarding headers, proof or none, are never a reason to forward.
        spoofed = b.get(target, headers={"X-OpenWA-Forwarded-By": "someone"})
    for answer in (response, spoofed):
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "SESSION_NOT_READY"
        assert answer.json()["error"]["details"] == {"instance": "inst-a"}
        assert "x-openwa-served-by" not in answer.headers


def test_an_owner_that_does_not_answer_is_a_503(cluster: Cluster) -> None:
    target = f"/api/sessions/{cluster.calls}/contacts/check/6281234567890"
    cluster.relay.close()
    try:
        with cluster.client(cluster.b) as b:
            response = b.get(target)
    finally:
        cluster.relay.open()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["details"] == {"instance": "inst-a", "timedOut": False}
    assert response.headers["retry-after"] == "2"
    with cluster.client(cluster.b) as b:
        _forwarded(b.get(target))
