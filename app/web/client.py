"""Who is asking: the client's IP address, from the socket or from a trusted proxy.

The address is used in memory only, to key rate limits and abuse records through keyed
hashes (`app.web.ratelimit`, `app.abuse.service.source_hash`); it is never stored or
logged.

`X-Forwarded-For` is believed only when the direct peer is one of `TRUSTED_PROXIES`
(addresses or networks). The header is then read from the right, skipping trusted
proxies: the first address that is not one is the client, as seen by the outermost
proxy we trust. Entries further left were written by the client itself and prove
nothing. When every entry is a trusted proxy, the leftmost is taken. `*` (as uvicorn's
`forwarded_allow_ips`) trusts every address, so the leftmost entry is believed: only
for a proxy that is the only way in and *replaces* the header instead of appending.

Under `undersigned serve` with TRUSTED_PROXIES, uvicorn's ProxyHeadersMiddleware has
already done the same walk (with the same list) and put the client in the ASGI scope;
the peer seen here is then that client, not a trusted proxy, so the header is not read
a second time and the answer is the same. Under TestClient (and any other server) the
walk happens here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import HTTPConnection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_LITERAL = 100
"""A client that is not an IP address (a Unix socket, a test client's name, a proxy's
`unknown`) is known by its text, cut to this length."""
IPV6_CLIENT_PREFIX = 64
"""An IPv6 client is its /64: one home or office network gets a whole /64 (often
more), and picks new addresses in it at will, so a full IPv6 address would let one
machine count as billions of clients."""


@dataclass(frozen=True, slots=True)
class Proxies:
    everyone: bool
    networks: tuple[IPNetwork, ...]

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        address = parse_ip(host)
        return address is not None and any(address in network for network in self.networks)


@lru_cache(maxsize=8)
def proxies(trusted: tuple[str, ...]) -> Proxies:
    """TRUSTED_PROXIES, parsed once. Entries that are neither an address nor a network
    are ignored (uvicorn does the same: it compares them as text, which no peer
    address matches)."""
    networks: list[IPNetwork] = []
    for entry in trusted:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return Proxies(everyone="*" in trusted, networks=tuple(networks))


def parse_ip(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 (`::ffff:192.0.2.1`) taken as the IPv4 it is."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_of(entry: str) -> str:
    """An X-Forwarded-For entry without its port: `192.0.2.1:4711` and
    `[2001:db8::1]:4711` become bare addresses; anything else is left as it is."""
    entry = entry.strip()
    if entry.startswith("["):
        end = entry.find("]")
        return entry[1:end] if end > 0 else entry
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every X-Forwarded-For entry, in order (several headers are one list)."""
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            entries += [part for part in value.decode("latin-1").split(",") if part.strip()]
    return [_host_of(entry) for entry in entries]


def client_ip(connection: HTTPConnection, trusted_proxies: Iterable[str]) -> str:
    """The client's address as text (normalized when it is an IP address)."""
    peer = connection.client.host if connection.client else ""
    trusted = proxies(tuple(trusted_proxies))
    if peer and trusted.trusts(peer):
        hops = forwarded_for(connection.scope.get("headers", ()))
        if hops:
            chosen = next((hop for hop in reversed(hops) if not trusted.trusts(hop)), hops[0])
            return _normalized(chosen)
    return _normalized(peer)


def _normalized(host: str) -> str:
    address = parse_ip(host)
    return str(address) if address is not None else host.strip().lower()[:MAX_LITERAL]


def limit_subject(ip: str) -> str:
    """What a rate limit counts as one client: an IPv4 address, an IPv6 /64, or the
    literal. (Many people behind one office or carrier address share it: the limits'
    defaults leave room for that.)"""
    address = parse_ip(ip)
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    if address is not None:
        return str(address)
    return f"literal:{ip}"


def client_of(connection: HTTPConnection) -> str:
    """The request's client address, worked out once per request."""
    state = connection.scope.setdefault("state", {})
    ip = state.get("client_ip")
    if ip is None:
        settings = connection.app.state.settings
        ip = client_ip(connection, settings.trusted_proxies)
        state["client_ip"] = ip
    return str(ip)
