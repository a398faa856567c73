"""Rate limits (issue 11): per key by role, failed authentication per client address,
429 `RATE_LIMITED` with `Retry-After`, counters shared through Redis by instances."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update

from openwa.api.authentication import _counted
from openwa.config import Settings
from openwa.db.models import ApiKeyRow
from openwa.db.unit_of_work import unit_of_work
from openwa.errors import RateLimited
from openwa.ratelimits.limiter import WindowRateLimits
from openwa.ratelimits.notation import parse_limits
from openwa.ratelimits.windows import MemoryWindows
from tests.api.checks import assert_error, assert_ok
from tests.events.wsclient import close_code, open_ws
from tests.fixtures.app import ADMIN_KEY, Api, AppFactory
from tests.fixtures.redis import DEAD_REDIS, LOCAL_REDIS, require_redis
from tests.fixtures.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]
WRONG_KEY = "owa_not-a-key-of-this-server"
OTHER_ADDRESS = "203.0.113.7"


def assert_limited(response: httpx.Response, scope: str, window_s: int = 60) -> int:
    """A 429 `RATE_LIMITED` envelope whose `Retry-After` is whole seconds within the window."""
    error = assert_error(response, 429, "RATE_LIMITED")
    assert error["details"]["scope"] == scope, error
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_s, retry_after
    return retry_after


@asynccontextmanager
async def from_address(api: Api, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the same app whose requests come from another socket peer."""
    transport = httpx.ASGITransport(app=api.app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://openwa.test") as http:
        yield http


async def sessions_as(api: Api, key: str | None) -> httpx.Response:
    return await api.request("GET", "/api/sessions", key=key)


# --- per key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
async def test_each_role_has_its_limit(app_factory: AppFactory, role: str) -> None:
    async with app_factory.running(**{f"rate_limit_{role}": "3/minute"}) as api:
        key = ADMIN_KEY if role == "admin" else await api.new_key(role)
        other = await api.new_key("viewer" if role != "viewer" else "operator")
        # Creating the keys took one of the admin key's three.
        for _ in range(2 if role == "admin" else 3):
            assert_ok(await sessions_as(api, key))
        assert_limited(await sessions_as(api, key), "key")
        # The other roles keep their own (generous) limits.
        for _ in range(5):
            assert_ok(await sessions_as(api, other))


async def test_every_api_route_counts_and_sse_is_refused(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_viewer="4/minute") as api:
        await api.create_session("alpha")
        key = await api.new_key("viewer")
        assert_ok(await api.request("GET", "/api/sessions", key=key))
        assert_ok(await api.request("GET", "/api/sessions/alpha", key=key))  # no-deps path
        assert_ok(await api.request("GET", "/api/events", key=key))
        # Refused for its role, still counted: a viewer cannot spend others' budget this way.
        assert_error(await api.request("POST", "/api/sessions/alpha/stop", key=key), 403)
        for method, path in [
            ("GET", "/api/sessions/alpha"),
            ("POST", "/api/sessions/alpha/stop"),
            ("GET", "/api/events/stream"),
        ]:
            assert_limited(await api.request(method, path, key=key), "key")


async def test_keys_are_limited_independently(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_viewer="2/minute") as api:
        first, second = await api.new_key("viewer"), await api.new_key("viewer")
        for _ in range(2):
            assert_ok(await sessions_as(api, first))
        assert_limited(await sessions_as(api, first), "key")
        for _ in range(2):
            assert_ok(await sessions_as(api, second))
        assert_limited(await sessions_as(api, second), "key")


async def test_retry_after_is_when_the_window_ends(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_admin="2/second") as api:
        for _ in range(2):
            assert_ok(await sessions_as(api, ADMIN_KEY))
        retry_after = assert_limited(await sessions_as(api, ADMIN_KEY), "key", window_s=1)
        await asyncio.sleep(retry_after)
        assert_ok(await sessions_as(api, ADMIN_KEY))


async def test_the_check_costs_no_database_round_trip(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_admin="2/minute") as api:
        for _ in range(2):
            assert_ok(await sessions_as(api, ADMIN_KEY))
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(str(args[2]))

        engines = {api.services.db_engine.sync_engine, api.services.read_engine.sync_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", record)
        try:
            assert_limited(await sessions_as(api, ADMIN_KEY), "key")
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", record)
        assert statements == []


async def test_an_empty_setting_means_no_limit(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_admin="", rate_limit_auth_failures="") as api:
        for _ in range(30):
            assert_error(await sessions_as(api, WRONG_KEY), 401, "UNAUTHORIZED")
        for _ in range(30):
            assert_ok(await sessions_as(api, ADMIN_KEY))


@pytest.mark.parametrize("value", ["lots", "50/fortnight", "0/second", "10 / minute;; x"])
def test_a_bad_limit_refuses_to_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match=r"rate limit|allows no request") as refused:
        Settings(_env_file=None, data_dir=tmp_path, rate_limit_viewer=value)  # type: ignore[call-arg]
    assert "rate_limit_viewer" in str(refused.value)


# --- failed authentication per address -----------------------------------------------------------


async def test_failed_authentication_is_limited_per_address(app_factory: AppFactory) -> None:
    async with app_factory.running(rate_limit_auth_failures="3/minute") as api:
        # Successful requests do not count.
        for _ in range(5):
            assert_ok(await sessions_as(api, ADMIN_KEY))
        assert_error(await sessions_as(api, None), 401, "UNAUTHORIZED")
        for _ in range(2):
            assert_error(await sessions_as(api, WRONG_KEY), 401, "UNAUTHORIZED")
        assert_limited(await sessions_as(api, WRONG_KEY), "address")
        # Refused before the key is looked at: a right guess is not told from a wrong one.
        assert_limited(await sessions_as(api, ADMIN_KEY), "address")
        # Another address is not affected.
        async with from_address(api, OTHER_ADDRESS) as other:
            ok = await other.get("/api/sessions", headers={"X-API-Key": ADMIN_KEY})
            assert_ok(ok)
            wrong = await other.get("/api/sessions", headers={"X-API-Key": WRONG_KEY})
            assert_error(wrong, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:5678", "192.0.2.1"),  # a proxy's address with its port
        ("[2001:db8:1:2::5]:443", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("64:ff9b::c000:201", "192.0.2.1"),  # NAT64: the IPv4 client it carries
        ("64:ff9b:1::c000:201", "192.0.2.1"),  # local-use NAT64
        ("2002:c000:201::1", "192.0.2.1"),  # 6to4
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
        (None, "unknown"),
    ],
)
def test_what_failures_count_against(address: str | None, counted: str) -> None:
    assert _counted(address) == counted


async def test_a_key_in_use_is_refused_while_guesses_in_flight_fill_the_limit() -> None:
    """A key the cache knows never goes to the database, so it is never counted as in
    flight; but while the guesses in flight fill the limit it is refused like them, or
    a burst could try any number of guesses against the keys in use."""
    limits = WindowRateLimits(MemoryWindows(), {}, parse_limits("2/minute"))
    async with contextlib.AsyncExitStack() as guesses:
        for guess in ("owa_guess-1", "owa_guess-2"):
            looking_up = await guesses.enter_async_context(
                limits.authenticating("198.51.100.7", guess)
            )
            await guesses.enter_async_context(looking_up())  # its lookup under way
        with pytest.raises(RateLimited):
            async with limits.authenticating("198.51.100.7", "owa_cached-key"):
                pass  # answered from the cache: no trip to the database
        async with limits.authenticating("198.51.100.8", "owa_cached-key"):
            pass  # another address is not held up
    async with limits.authenticating("198.51.100.7", "owa_cached-key"):
        pass  # the lookups over (and nothing failed): free again


async def test_an_ipv6_clients_failures_count_for_its_whole_64(app_factory: AppFactory) -> None:
    """A subscriber is given a whole /64: counted per address, every guess could come
    from a fresh one."""
    async with app_factory.running(rate_limit_auth_failures="2/minute") as api:
        for n in range(2):
            async with from_address(api, f"2001:db8:1:2::{n + 1}") as client:
                guess = await client.get("/api/sessions", headers={"X-API-Key": WRONG_KEY})
                assert_error(guess, 401, "UNAUTHORIZED")
        async with from_address(api, "2001:db8:1:2:ffff::9") as client:
            response = await client.get("/api/sessions", headers={"X-API-Key": ADMIN_KEY})
            assert_limited(response, "address")
        async with from_address(api, "2001:db8:1:3::1") as client:  # another /64
            assert_ok(await client.get("/api/sessions", headers={"X-API-Key": ADMIN_KEY}))


async def test_a_burst_of_guesses_at_once_is_limited_as_if_one_by_one(
    app_factory: AppFactory,
) -> None:
    """A failure is known only once its key's lookup ends: checked against the failures
    alone, a burst of parallel guesses all passed before any was counted (1,000 at once
    against a limit of 10 a minute). The keys being looked up in the database count
    meanwhile; many requests at once with one key, or with keys in use, are not guesses."""
    async with app_factory.running(rate_limit_auth_failures="5/minute") as api:
        at_once = await asyncio.gather(*(sessions_as(api, ADMIN_KEY) for _ in range(30)))
        for response in at_once:
            assert_ok(response)
        # Nor are more keys in use at once than the limit (a backend with a key for
        # each of its tenants): a key in use is known, not looked up.
        tenants = []
        for n in range(8):
            made = await api.request("POST", "/api/keys", json={"name": f"t{n}", "role": "viewer"})
            tenants.append(assert_ok(made, 201)["key"])
            assert_ok(await sessions_as(api, tenants[-1]))
        for response in await asyncio.gather(*(sessions_as(api, key) for key in tenants)):
            assert_ok(response)
        guesses = [f"owa_guess-{secrets.token_hex(12)}" for _ in range(40)]
        answers = await asyncio.gather(*(sessions_as(api, guess) for guess in guesses))
        codes = [response.status_code for response in answers]
        assert 1 <= codes.count(401) <= 5, codes
        assert codes.count(429) == len(codes) - codes.count(401), codes


# --- streams ---------------------------------------------------------------------------------------


async def test_websocket_handshakes_over_a_limit_are_closed_1013(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(RATE_LIMIT_VIEWER="2/minute", RATE_LIMIT_AUTH_FAILURES="2/minute")
    server.start()
    with server.client() as client:
        response = client.post("/api/keys", json={"name": "ws", "role": "viewer"})
        viewer = assert_ok(response, 201)["key"]
    for _ in range(2):
        async with open_ws(server, key=viewer) as ws:
            await ws.close()
    async with open_ws(server, key=viewer) as over:
        assert await close_code(over) == 1013
    # Two failures from this address: even the admin key's handshake is refused now.
    with server.client(WRONG_KEY) as client:
        for _ in range(2):
            assert_error(client.get("/api/sessions"), 401, "UNAUTHORIZED")
    async with open_ws(server, key=ADMIN_KEY) as over:
        assert await close_code(over) == 1013
    with server.client() as client:
        assert_limited(client.get("/api/sessions"), "address")


# --- several instances -----------------------------------------------------------------------------


async def _env_key_id(api: Api) -> str:
    async with unit_of_work(api.services.db) as db:
        key_id: str = (
            await db.execute(select(ApiKeyRow.id).where(ApiKeyRow.source == "env"))
        ).scalar_one()
    return key_id


async def test_redis_counters_are_shared_by_instances(database_url: str, tmp_path: Path) -> None:
    await require_redis()
    shared = {
        "cache_type": "redis",
        "redis_url": LOCAL_REDIS,
        # Unique per test: other tests (and runs) on the same Redis keep their own counters.
        "rate_limit_namespace": f"openwa-test:{secrets.token_hex(8)}",
        "rate_limit_admin": "4/minute",
        "rate_limit_auth_failures": "3/minute",
        "api_key": f"rate-limit-key-{secrets.token_hex(16)}",
    }
    key = shared["api_key"]
    first = AppFactory(database_url, tmp_path / "first")
    second = AppFactory(f"sqlite+aiosqlite:///{tmp_path / 'second.db'}", tmp_path / "second")
    async with first.running(**shared) as one, second.running(**shared) as two:
        # One key on two instances: the same id, as when they share a database.
        async with unit_of_work(two.services.db) as db:
            await db.execute(
                update(ApiKeyRow).where(ApiKeyRow.source == "env").values(id=await _env_key_id(one))
            )
        for api in (one, two, one, two):
            assert_ok(await sessions_as(api, key))
        assert_limited(await sessions_as(api=one, key=key), "key")
        assert_limited(await sessions_as(api=two, key=key), "key")

        for api in (one, two, one):
            assert_error(await sessions_as(api, WRONG_KEY), 401, "UNAUTHORIZED")
        assert_limited(await sessions_as(two, WRONG_KEY), "address")
        assert_limited(await sessions_as(one, WRONG_KEY), "address")


async def test_an_unreachable_redis_lets_requests_through(app_factory: AppFactory) -> None:
    limits = {"rate_limit_admin": "1/minute", "rate_limit_auth_failures": "1/minute"}
    api, manager = await app_factory.start(cache_type="redis", redis_url=DEAD_REDIS, **limits)
    try:
        for _ in range(3):
            assert_ok(await sessions_as(api, ADMIN_KEY))
            assert_error(await sessions_as(api, WRONG_KEY), 401, "UNAUTHORIZED")
    finally:
        await AppFactory.stop(api, manager)
