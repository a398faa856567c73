"""Session proxies on non-global addresses are refused unless `PROXY_ALLOW_PRIVATE`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fixtures.app import Api, AppFactory

# Every form of a non-global address the one rule covers, credentials included.
PRIVATE_PROXIES = [
    "http://127.0.0.1:3128",
    "http://user:s3cr3t@10.1.2.3:3128",
    "socks5://192.168.1.1:1080",
    "socks5h://169.254.169.254:1080",
    "http://[::1]:3128",
    "http://[::ffff:127.0.0.1]:3128",  # IPv4-mapped
    "http://[2002:7f00:1::]:3128",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a00:1]:3128",  # NAT64 around 10.0.0.1
    "http://localhost:3128",  # a name that resolves to loopback
    "http://0.0.0.0:3128",
]
PUBLIC_PROXY = "socks5://T0KEN@8.8.8.8:1080"  # a literal: nothing is resolved or dialled


@pytest.fixture
async def api(app_factory: AppFactory) -> AsyncIterator[Api]:
    """The default: the setting off (this directory's apps turn it on for other tests)."""
    async with app_factory.running(proxy_allow_private=False) as started:
        yield started


def refused(response: object, url: str) -> None:
    status = getattr(response, "status_code", None)
    assert status == 400, (url, getattr(response, "text", ""))
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"]["code"] == "WEBHOOK_URL_FORBIDDEN", (url, body)
    assert body["error"]["details"]["field"] == "body.config.proxy", body
    assert "s3cr3t" not in response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("proxy", PRIVATE_PROXIES)
async def test_private_proxy_is_refused_on_create(api: Api, proxy: str) -> None:
    response = await api.request(
        "POST",
        "/api/sessions",
        json={"name": "proxied", "autoStart": False, "config": {"proxy": proxy}},
    )
    refused(response, proxy)
    listed = await api.request("GET", "/api/sessions")
    assert listed.json()["data"] == [], "a refused session was stored"


async def test_private_proxy_is_refused_on_patch(api: Api) -> None:
    created = await api.create_session("proxied", autoStart=False, config={"proxy": PUBLIC_PROXY})
    assert created["config"]["proxy"] == "socks5://***@8.8.8.8:1080"
    for proxy in PRIVATE_PROXIES:
        response = await api.request(
            "PATCH", "/api/sessions/proxied", json={"config": {"proxy": proxy}}
        )
        refused(response, proxy)
    kept = await api.session("proxied")
    assert kept["config"]["proxy"] == "socks5://***@8.8.8.8:1080"
    # Removing the proxy needs no check.
    cleared = await api.request("PATCH", "/api/sessions/proxied", json={"config": {"proxy": None}})
    assert cleared.status_code == 200, cleared.text


async def test_private_proxies_allowed_by_the_setting(app_factory: AppFactory) -> None:
    async with app_factory.running(proxy_allow_private=True) as api:
        for index, proxy in enumerate(PRIVATE_PROXIES):
            response = await api.request(
                "POST",
                "/api/sessions",
                json={"name": f"p{index}", "autoStart": False, "config": {"proxy": proxy}},
            )
            assert response.status_code == 201, (proxy, response.text)
