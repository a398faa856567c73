"""Refuse URLs that reach into the server's own network (SSRF), unless allowed.

Checked when a webhook is saved and again at delivery, against the address actually
connected to: the delivery client resolves through `GuardedResolver`, so a name that
resolved to a public address when saved and to 127.0.0.1 later is still refused.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from openwa.errors import ValidationFailed, WebhookUrlForbidden


def is_forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def parse_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            details=[{"field": "body.url", "message": "must be an http(s) URL with a host"}]
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationFailed(
            details=[{"field": "body.url", "message": "has an invalid port"}]
        ) from exc
    return parts.hostname, port


async def check_url(url: str, allow_private: bool) -> None:
    host, port = parse_url(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValidationFailed(
            details=[{"field": "body.url", "message": f"host does not resolve: {exc}"}]
        ) from exc
    forbidden = sorted({str(info[4][0]) for info in infos if is_forbidden(str(info[4][0]))})
    if forbidden:
        raise WebhookUrlForbidden(details={"url": url, "addresses": forbidden})


class ForbiddenAddress(OSError):
    pass


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops (and refuses) forbidden addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not is_forbidden(r["host"])]
        if not allowed:
            raise ForbiddenAddress(
                errno.EACCES,
                f"WEBHOOK_URL_FORBIDDEN: {host} resolves only to forbidden addresses",
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def literal_forbidden(url: str) -> bool:
    """An IP literal in the URL is connected to without resolving: check it here."""
    host = urlsplit(url).hostname or ""
    try:
        return is_forbidden(host)
    except ValueError:
        return False
