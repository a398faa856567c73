"""Client networks a key may be used from (`allowedCidrs`): parsing and matching."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Enough for a few offices and VPN ranges; a longer list is more likely a mistake, and
# every request of the key is matched against it.
MAX_CIDRS = 32


def normalise_cidr(value: str) -> str:
    """The network in its canonical form; host bits are dropped (`10.1.2.3/8` is
    `10.0.0.0/8`) and a bare address is a /32 or /128. Raises ValueError otherwise."""
    return str(ipaddress.ip_network(value.strip(), strict=False))


@lru_cache(maxsize=1024)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """Parsed once per distinct list, so a cached key costs no parsing per request."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether the client `address` is in one of `networks`. No address, or one that is
    not an IP (a Unix socket, a test client's name), is outside every network: a key
    limited to networks fails closed. An IPv4 client seen on a dual-stack socket as
    `::ffff:a.b.c.d` is matched as the IPv4 address it is."""
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
