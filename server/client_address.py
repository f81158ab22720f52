"""Who is asking: the client's address, believing `X-Forwarded-For` only from trusted proxies.

Throttles key on the client address (sign-in failures, agent enrolments), so an address a client
can choose itself limits nothing; they key on its `site`, since one host or site holds a whole
IPv6 /64 and would otherwise get one allowance per address of it. The address is the TCP peer's,
unless the peer is one of `MSP_CONSOLE_TRUSTED_PROXIES` (addresses or networks, none by
default): then `X-Forwarded-For` is read from the right, and the first hop that is not a trusted
proxy is the client. uvicorn's own proxy handling is off (`proxy_headers=False`): this module
is the one place that decides.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.requests import HTTPConnection

from server.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=16)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of `MSP_CONSOLE_TRUSTED_PROXIES` (a bare address is a network of one)."""
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies)


def _address(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Network]
) -> bool:
    return any(address in network for network in networks)


def resolve(
    peer: str | None, forwarded_for: str | None, networks: tuple[Network, ...]
) -> str | None:
    """The client address from the TCP peer and the `X-Forwarded-For` header it sent."""
    peer_address = _address(peer) if peer else None
    if peer_address is None or not networks or not _trusted(peer_address, networks):
        return peer
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # a hop we cannot read: the last readable one answers for it
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


def client_address(connection: HTTPConnection, settings: Settings) -> str | None:
    """The address of the client behind a request or websocket."""
    peer = connection.client.host if connection.client else None
    networks = trusted_networks(settings.trusted_proxies)
    return resolve(peer, connection.headers.get("x-forwarded-for"), networks)


def site(address: str | None) -> str:
    """What one host or site holds: an IPv4 address (also when IPv4-mapped), or the /64 of an
    IPv6 one."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "")[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
