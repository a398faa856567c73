"""The authentication step of every `/api` request and stream, with its rate limits.

Three steps around the key lookup: an address that failed authentication too often is
refused before its key is looked at; a failed lookup counts against the address; a
resolved key counts against its role's limit. All three are keyed by what the request
already holds, so they cost no database round trip.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from openwa.api.context import request_id_var
from openwa.api.forwarding import forwarded_from
from openwa.keys.principal import Principal
from openwa.kit.addresses import embedded_ipv4
from openwa.services import Services


def client_address(connection: HTTPConnection) -> str | None:
    """The client's address (rate limits, a key's `allowedCidrs`, the audit log): the
    socket's peer, or what a proxy listed in `FORWARDED_ALLOW_IPS` says in
    `X-Forwarded-For` (uvicorn rewrites the peer for those, and only for those), or, on
    a call another instance forwarded with a valid proof, the client it was forwarded
    for (api/forwarding.py rewrites the peer for those, and only for those)."""
    return connection.client.host if connection.client is not None else None


async def authenticate(connection: HTTPConnection, raw_key: str | None) -> Principal:
    services: Services = connection.app.state.services
    address = client_address(connection)
    if forwarded_from(connection.scope) is not None:
        # Counted where the client sent it; the key is checked again all the same.
        principal = await services.keys.authenticate(raw_key, address)
        await _note_key_use(services, connection, principal, address)
        return principal
    limits = services.rate_limits
    # An expired key is refused here too (401), so it counts as a failed attempt.
    async with limits.authenticating(_counted(address), raw_key) as looking_up:
        principal = await services.keys.authenticate(raw_key, address, looking_up)
    await limits.hit_key(principal.key_id, principal.role)
    await _note_key_use(services, connection, principal, address)
    return principal


def _counted(address: str | None) -> str:
    """What failed authentications count against: the client's address, but for IPv6
    its /64, the prefix one subscriber is given whole (every address in it was a
    counter of its own: a fresh one per guess took the limit away). A proxy's
    `[address]:port` or `address:port` is read without the port (a port per connection
    was a counter per connection), and an IPv6 form that carries an IPv4 address
    (mapped, NAT64, 6to4, Teredo) as that IPv4 client, as the URL guard reads it."""
    if address is None:
        return "unknown"
    ip = _ip_of(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        carried = embedded_ipv4(ip)
        if carried is not None:
            return str(carried)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidates = [address]
    if address.startswith("["):  # [2001:db8::1]:443
        candidates.append(address[1:].split("]", 1)[0])
    elif address.count(":") == 1:  # 192.0.2.1:5678
        candidates.append(address.split(":", 1)[0])
    for candidate in candidates:
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


async def _note_key_use(
    services: Services, connection: HTTPConnection, principal: Principal, address: str | None
) -> None:
    """For the audit log: the request's key, and its first use from this address (a
    known pair costs no query)."""
    route = connection.scope.get("route")
    await services.audit.note_key_use(
        principal.key_id,
        address,
        connection.scope.get("method", "WS"),
        getattr(route, "path", None) or connection.url.path,
        request_id_var.get(),
    )
