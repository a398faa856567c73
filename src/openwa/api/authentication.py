"""The authentication step of every `/api` request and stream, with its rate limits.

Three steps around the key lookup: an address that failed authentication too often is
refused before its key is looked at; a failed lookup counts against the address; a
resolved key counts against its role's limit. All three are keyed by what the request
already holds, so they cost no database round trip.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from openwa.errors import Unauthorized
from openwa.keys.principal import Principal
from openwa.services import Services


def client_address(connection: HTTPConnection) -> str:
    """The socket peer; behind a proxy listed in `FORWARDED_ALLOW_IPS`, the client it
    names (uvicorn rewrites the peer from `X-Forwarded-For` for those proxies only)."""
    return connection.client.host if connection.client else "unknown"


async def authenticate(connection: HTTPConnection, raw_key: str | None) -> Principal:
    services: Services = connection.app.state.services
    limits = services.rate_limits
    address = client_address(connection)
    await limits.check_address(address)
    try:
        principal = await services.keys.authenticate(raw_key)
    except Unauthorized:
        await limits.failed_authentication(address)
        raise
    await limits.hit_key(principal.key_id, principal.role)
    return principal
