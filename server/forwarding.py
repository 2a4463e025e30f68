"""Who a request comes from and which host it names, behind proxies or not.

Belongs here: trusting X-Forwarded-For/-Host/-Proto only from configured proxy networks,
and the allowed Host names (DNS rebinding: a page whose Origin and Host both name an
attacker's domain that resolves to this server must be refused). Pure: strings in, strings
out; server/app.py applies them to requests.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WILDCARDS = ("0.0.0.0", "::", "")


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ValueError names a bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {cidr!r}") from None
    return tuple(out)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as the server should see it: the client's address, and the host and
    scheme its browser used."""

    client: str
    host: str
    scheme: str
    forwarded: bool = False  # from a trusted proxy: the scheme is the browser's


def seen(
    peer: str, host: str, scheme: str, headers: Mapping[str, str], trusted: tuple[Network, ...]
) -> Seen:
    """The forwarded headers count only when the peer is a trusted proxy. The client is the
    rightmost X-Forwarded-For address that is not a trusted proxy itself (the ones left of
    it could be anything the client sent)."""
    if not _trusted(peer, trusted):
        return Seen(peer, host, scheme)
    client = peer
    hops = [h.strip() for h in headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_address(hop):
            break  # not an address: nothing left of it can be believed
        client = hop
        if not _trusted(hop, trusted):
            break
    forwarded_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    forwarded_scheme = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return Seen(client, forwarded_host, forwarded_scheme or scheme, True)


def hostname(host: str) -> str:
    """The name in a Host header, without its port or a final dot: "[::1]:80" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.removesuffix(".")  # "example.org." is "example.org"


@functools.cache  # name lookups may be slow: once per address
def default_hosts(bound: str) -> tuple[str, ...]:
    """The names this server answers to unless told otherwise: the bound address, localhost,
    and the machine's names (and, bound to every interface, its addresses)."""
    names = {bound, "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    if bound in WILDCARDS:
        with contextlib.suppress(OSError):
            names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    return tuple(sorted(name.lower() for name in names if name not in WILDCARDS))


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request naming `host` is for this server ("*" allows any). An address
    (127.0.0.1, [::1], 10.0.0.5) and localhost are always allowed: DNS rebinding needs a
    name the attacker's DNS answers for, and health checks and scrapes by address must
    keep working whatever names the server is given."""
    if "*" in allowed:
        return True
    if host is None:
        return False
    name = hostname(host)
    return name in allowed or name == "localhost" or _is_address(name)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
