"""Which network addresses a user-supplied URL may reach (SSRF), in one place.

Webhook deliveries and media fetched from a client's URL connect where a client said.
The rule is one: the address connected to must be global (`ipaddress` `is_global`, not
multicast, not reserved, not IPv6 site-local) after unwrapping the IPv6 forms that carry
an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64), unless the
operator allowed private targets (`WEBHOOK_ALLOW_PRIVATE`; for session proxies
`PROXY_ALLOW_PRIVATE`). The check runs on the socket about to be connected
(`guarded_connector`), so a name that resolved to a public address when a webhook was
saved and to 127.0.0.1 at delivery (DNS rebinding) is still refused, and so is every
redirect hop of a media fetch. The server's own connections (database, Redis, S3, other
instances) are configured by the operator and are not checked.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import aiohttp.resolver
from yarl import URL

from openwa.errors import ValidationFailed, WebhookUrlForbidden
from openwa.kit.redact import redact_url

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries, if it is one of the forms that do."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address, which the packets reach
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_forbidden(address: str | IpAddress) -> bool:
    """True when `address` is not a global unicast address (after unwrapping).

    `ipaddress` alone would let `2002:7f00:1::` (6to4 around 127.0.0.1) pass, and would
    refuse `64:ff9b::` + a public address (NAT64 on an IPv6-only host) as reserved. Nor
    does `is_global` exclude IPv6 site-local (`fec0::/10`): deprecated, it is still routed
    inside some networks, as private addresses are."""
    ip = ipaddress.ip_address(address.split("%")[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        # A form that carries an IPv4 address goes where that address goes: judge it.
        ip = embedded_ipv4(ip) or ip
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return not ip.is_global or site_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def parse_url(url: str, field: str = "body.url") -> tuple[str, int]:
    """(host, port) of an http(s) URL; anything else is a VALIDATION_ERROR on `field`:
    one `urlsplit` refuses (`http://[::1/x`, a host that NFKC folds into a delimiter),
    and one with a control character, which no request could carry."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValidationFailed(
            details=[{"field": field, "message": "is not a URL that parses"}]
        ) from exc
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        # A space is left for the client to encode (`my photo.jpg`), as it does.
        raise ValidationFailed(details=[{"field": field, "message": "holds a control character"}])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(
            details=[{"field": field, "message": "must be an http(s) URL with a host"}]
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationFailed(
            details=[{"field": field, "message": "has an invalid port"}]
        ) from exc
    return parts.hostname, port


async def check_url(url: str, allow_private: bool, field: str = "body.url") -> None:
    """Refuse, when saved or asked for, a URL whose host resolves to a forbidden address.

    An early, friendly answer (400 `WEBHOOK_URL_FORBIDDEN`); the binding check is the one
    `guarded_connector` makes on every connect.
    """
    host, port = parse_url(url, field)
    if allow_private:
        return
    forbidden = await _forbidden_addresses(host, port, field)
    if forbidden:
        # Echoed with its user info and key-like query values masked, as in logs.
        raise WebhookUrlForbidden(details={"url": redact_url(url), "addresses": forbidden})


async def check_proxy(url: str, allow_private: bool, field: str = "body.config.proxy") -> None:
    """Refuse a session proxy whose host is, or resolves to, a forbidden address.

    The proxy's connection is made by the engine (whatsmeow's Go code, not our sockets), so
    this check when the proxy is set is the only one: a name that later resolves elsewhere
    is not caught. The URL is not echoed back: it may carry the proxy's credentials."""
    if allow_private:
        return
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValidationFailed(details=[{"field": field, "message": "must have a host"}])
    forbidden = await _forbidden_addresses(parts.hostname, parts.port or 1080, field)
    if forbidden:
        raise WebhookUrlForbidden(
            "The proxy resolves to a forbidden address",
            details={"field": field, "host": parts.hostname, "addresses": forbidden},
        )


# Names a client chose are looked up asynchronously (c-ares, through aiodns, a
# dependency), never in a thread: the system's resolver runs in the event loop's default
# thread pool (a handful of threads, shared with file work), and a name whose DNS servers
# never answer held its thread until the lookup gave up, so a few such webhooks or media
# URLs held them all. aiohttp's connectors take aiodns by themselves when it is there
# (and own, and close, their resolver); without it they would fall back to threads.
if aiohttp.resolver.DefaultResolver is not aiohttp.AsyncResolver:  # pragma: no cover
    raise ImportError("aiodns is required: names are looked up without a thread")

_OLD_IPV4 = re.compile(r"[0-9A-Fa-fxX.]+")


def _connect_host(host: str, field: str) -> str:
    """The host as the HTTP client will connect to it: IDNA-encoded (`ⓛocalhost` is
    `localhost`, `bücher.de` is `xn--bcher-kva.de`); a name that has no such form is
    a validation error, not a lookup."""
    try:
        return str(URL.build(scheme="http", host=host).raw_host)
    except (ValueError, UnicodeError) as exc:
        raise ValidationFailed(
            details=[{"field": field, "message": "host is not a valid name"}]
        ) from exc


def _literal(host: str) -> str | None:
    """The address a host names by itself, if it is one: an IP literal, or IPv4 in one
    of the older forms the system's resolver reads as an address (`2130706433`,
    `127.1`, `0x7f.1`), which c-ares would look up as a name instead."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _OLD_IPV4.fullmatch(host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


async def _forbidden_addresses(host: str, port: int, field: str) -> list[str]:
    """The forbidden addresses among those `host` resolves to (a literal is its own)."""
    host = _connect_host(host, field)
    literal = _literal(host)
    addresses = [literal] if literal is not None else await _resolve(host, port, field)
    return sorted({address for address in addresses if is_forbidden(address)})


async def _resolve(host: str, port: int, field: str) -> list[str]:
    lookup = aiohttp.AsyncResolver()
    try:
        infos = await lookup.resolve(host, port, family=socket.AF_UNSPEC)
    except (OSError, ValueError, UnicodeError) as exc:
        raise ValidationFailed(
            details=[{"field": field, "message": f"host does not resolve: {exc}"}]
        ) from exc
    finally:
        await lookup.close()
    return [str(info["host"]) for info in infos]


class ForbiddenAddress(OSError):
    """Raised instead of connecting to a forbidden address, or of looking up a name that
    resolves to nothing else. Raised from a lookup or a connect, aiohttp hands it on as
    the `os_error` of its `ClientConnectorError`: the reason travels as this type."""


def _guarded_socket(addr_info: Any) -> socket.socket:
    """The socket for one resolved address, made only when the address is allowed.

    aiohttp hands every address it is about to connect to (IP literals, resolved names,
    each happy-eyeballs candidate, each redirect hop) to this factory, and connects to
    exactly that address: checking here leaves no window between check and connect.
    """
    family, type_, proto, _canon, sockaddr = addr_info
    host = str(sockaddr[0])
    if is_forbidden(host):
        raise ForbiddenAddress(
            errno.EACCES, f"WEBHOOK_URL_FORBIDDEN: {host} is a forbidden address"
        )
    return socket.socket(family=family, type=type_, proto=proto)


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiodns lookups (above) with the forbidden addresses left out, and a name that has
    no other refused as such (`ForbiddenAddress`).

    Left to the connect-time check alone, a name with several forbidden addresses
    (`localhost`: `::1` and `127.0.0.1`) failed once per address, and aiohttp's happy
    eyeballs folds differing failures into one plain OSError that says why only in its
    text. The connect-time check stays the binding one (literals, and whatever a lookup
    returned are checked there too)."""

    def __init__(self) -> None:
        self._lookup = aiohttp.AsyncResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        found = await self._lookup.resolve(host, port, family)
        allowed = [result for result in found if not is_forbidden(result["host"])]
        if found and not allowed:
            refused = ", ".join(sorted({result["host"] for result in found}))
            raise ForbiddenAddress(
                errno.EACCES,
                f"WEBHOOK_URL_FORBIDDEN: {host} resolves to forbidden addresses only ({refused})",
            )
        return allowed

    async def close(self) -> None:
        await self._lookup.close()


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that owns its `_GuardedResolver` (aiohttp closes only the
    resolvers it made itself)."""

    def __init__(self, **kwargs: Any) -> None:
        self._guarded_resolver = _GuardedResolver()
        super().__init__(resolver=self._guarded_resolver, socket_factory=_guarded_socket, **kwargs)

    async def close(self, *, abort_ssl: bool = False) -> None:
        try:
            await super().close(abort_ssl=abort_ssl)
        finally:
            await self._guarded_resolver.close()


def guarded_connector(allow_private: bool, **kwargs: Any) -> aiohttp.TCPConnector:
    """A connector for user-supplied URLs: forbidden addresses refused at connect time,
    names looked up without a thread (aiodns, above), a name that resolves to forbidden
    addresses only refused at its lookup; either way the error's `os_error` is a
    `ForbiddenAddress`."""
    if allow_private:
        return aiohttp.TCPConnector(**kwargs)
    return _GuardedConnector(**kwargs)
