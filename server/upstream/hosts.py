"""Which hosts the console may call as an MSP Administrator (`MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS`).

The URL of `connectMspAdministrator` comes from a user: unchecked, the console would fetch
whatever it names (loopback, internal networks, cloud metadata). Hosts are compared in one
normalized spelling, so case, a trailing dot, brackets, IDNA and the many ways of writing an IPv4
address (decimal, hex, octal, short forms) cannot slip past the list; and the URL the client then
calls is rebuilt from the parts that were checked, so no second parser can read another host.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_LIKE = re.compile(r"[0-9a-fx.]+")
"""What the resolver may read as an IPv4 address (inet_aton: 2130706433, 0x7f.1, 0177.0.0.1)."""


def normalize_host(host: str) -> str:
    """The one spelling of a host name or address; ValueError when it is neither."""
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        if "%" in name:  # a zone id names an interface of this machine, never a remote API
            raise ValueError(f"not a host name or address: {host!r}")
        try:
            address = ipaddress.IPv6Address(name)
        except ValueError:
            raise ValueError(f"not a host name or address: {host!r}") from None
        return str(address.ipv4_mapped or address)
    name = name.removesuffix(".").lower()
    if _IPV4_LIKE.fullmatch(name):
        try:
            return socket.inet_ntoa(socket.inet_aton(name))
        except OSError:
            pass
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"not a host name or address: {host!r}") from None
    labels = name.split(".")
    # A numeric last label ("08", "1.2.3.4.5") makes neither a name nor an address.
    if len(name) > 253 or labels[-1].isdigit() or not all(map(_LABEL.fullmatch, labels)):
        raise ValueError(f"not a host name or address: {host!r}")
    return name


def base_url(url: str) -> tuple[str, str]:
    """(the URL rebuilt from its checked parts, its normalized host); ValueError saying what is
    wrong with it."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        raise ValueError("the MSP Administrator URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the MSP Administrator URL must be an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "the MSP Administrator URL must not hold a user name or password; "
            "give them as username and password"
        )
    if parts.query or parts.fragment:
        raise ValueError("the MSP Administrator URL must not have a query or fragment")
    try:
        host = normalize_host(parts.hostname)
    except ValueError:
        raise ValueError("the host of the MSP Administrator URL is not valid") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}", host


def is_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a normalized host is one of the allowed ones (any port)."""
    return any(normalize_host(entry) == host for entry in allowed)
