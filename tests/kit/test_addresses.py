"""The one address rule for user-supplied URLs, and the connector that applies it."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from openwa.kit.addresses import ForbiddenAddress, guarded_connector, is_forbidden
from tests.fixtures.server import free_port

FORBIDDEN = [
    "127.0.0.1",
    "127.9.9.9",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fec0::1",  # site-local: deprecated, still routed inside some networks
    "feff:ffff::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible
    "2002:7f00:1::",  # 6to4 around 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:db8::1",  # documentation
]

ALLOWED = [
    "93.184.215.14",
    "8.8.8.8",
    "2606:4700::1111",
    "2002:5db8:d70e::",  # 6to4 around a public address
    "64:ff9b::5db8:d70e",  # NAT64 around a public address (IPv6-only hosts)
    "::ffff:93.184.215.14",
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_global_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(address)


async def _served(received: list[str]) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        received.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_the_connector_refuses_at_connect_time() -> None:
    """Whatever the URL says (a literal, a name), the address connected to is checked."""
    received: list[str] = []
    runner, port = await _served(received)
    try:
        async with aiohttp.ClientSession(connector=guarded_connector(False)) as http:
            # `localhost` is two forbidden addresses (::1 and 127.0.0.1): refused at its
            # lookup, as the same type (two refused connects would come back as one
            # plain OSError that says why only in its text).
            for url in (f"http://127.0.0.1:{port}/a", f"http://localhost:{port}/b"):
                with pytest.raises(aiohttp.ClientConnectorError) as caught:
                    await http.get(url)
                assert isinstance(caught.value.os_error, ForbiddenAddress), caught.value
                assert "forbidden" in str(caught.value).lower(), caught.value
        assert received == []
        # Allowed by the setting: the same connection goes through.
        async with (
            aiohttp.ClientSession(connector=guarded_connector(True)) as http,
            http.get(f"http://127.0.0.1:{port}/d") as response,
        ):
            assert response.status == 200
        assert received == ["/d"]
    finally:
        await runner.cleanup()
