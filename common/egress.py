"""Which destinations an outbound call may reach (today: an account's `notify_url`).

Whoever configures an account chooses where Hookyard POSTs, so without these rules it would
call the metadata server (credentials), the database or the stack's own admin API. The
rules judge addresses, not spellings: `2130706433`, `127.1` and `[::ffff:127.0.0.1]` are
all loopback, and a public name may resolve to a private address, so every address a name
resolves to is judged, and the caller connects to one of those judged addresses instead of
resolving again (a second answer could differ: DNS rebinding). `resolve` is the only I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from common.errors import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[..., Sequence[tuple[Any, ...]]]

SCHEMES = frozenset({"http", "https"})
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(PermanentError):
    """Policy forbids the destination: retrying cannot help, only a different URL can."""


class DestinationUnresolved(TransientError):
    """The name has no address right now; DNS may answer later."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL that passed the shape rules; `host` is what `Host` and TLS SNI must carry."""

    url: httpx.URL
    host: str
    port: int
    literal: IPAddress | None

    def pinned_to(self, address: IPAddress) -> PinnedRequest:
        """The same request, sent to `address` (already judged) rather than to a new lookup."""
        named_tls = self.url.scheme == "https" and self.literal is None
        return PinnedRequest(
            url=self.url.copy_with(host=str(address)),
            host_header=self.url.netloc.decode("ascii"),
            extensions={"sni_hostname": self.host} if named_tls else {},
        )


@dataclass(frozen=True, slots=True)
class PinnedRequest:
    url: httpx.URL
    host_header: str
    extensions: dict[str, str]


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Loopback is allowed only for local tests; private, link-local and metadata never."""

    allow_loopback: bool = False

    def destination(self, url: str) -> Destination:
        """Shape and name rules, no lookup: scheme, credentials, metadata names, literals."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise DestinationRefused("is not a valid URL") from exc
        if parsed.scheme not in SCHEMES:
            raise DestinationRefused("must use http or https")
        if parsed.userinfo:
            raise DestinationRefused("must not carry credentials (user:password@)")
        host = parsed.raw_host.decode("ascii").lower()
        if not host:
            raise DestinationRefused("has no host")
        if host.rstrip(".") in METADATA_HOSTS:
            raise DestinationRefused(f"names {host}, the cloud metadata server")
        literal = _literal(host)
        if literal is not None:
            self.check(literal)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return Destination(parsed, host, port, literal)

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be called, or None when it may."""
        if address in METADATA_ADDRESSES:
            return "the cloud metadata server"
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:  # the same host as the IPv4 address
                return self.refusal(address.ipv4_mapped)
            embedded = address.sixtofour or (
                ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
            )
            if embedded is not None:  # reached through a gateway: never loopback
                inner = EgressPolicy(allow_loopback=False).refusal(embedded)
                return f"embeds {embedded}: {inner}" if inner else None
        if address.is_loopback:
            return None if self.allow_loopback else "loopback"
        for label, flagged in (
            ("unspecified", address.is_unspecified),
            ("link-local", address.is_link_local),
            ("private", address.is_private),
            ("multicast", address.is_multicast),
            ("reserved", address.is_reserved),
            ("not globally routable", not address.is_global),
        ):
            if flagged:
                return label
        return None

    def check(self, address: IPAddress) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise DestinationRefused(f"points at {address} ({reason})")


def resolve(
    policy: EgressPolicy, destination: Destination, lookup: Lookup = socket.getaddrinfo
) -> list[IPAddress]:
    """Every address the host has, each judged; one forbidden address refuses them all.

    All, not the first: which one a client picks is not ours to predict, and a name that
    mixes public and private answers is an attack, not a configuration.
    """
    if destination.literal is not None:
        policy.check(destination.literal)
        return [destination.literal]
    try:
        infos = lookup(destination.host, destination.port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise DestinationRefused("has a host name that cannot be looked up") from exc
    except OSError as exc:
        raise DestinationUnresolved(f"{destination.host} does not resolve") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolved(f"{destination.host} has no address")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise DestinationRefused(f"host {destination.host} resolves to {address} ({reason})")
    return addresses


def redacted(url: str) -> str:
    """`url` without credentials, for attempt records and messages."""
    try:
        return str(httpx.URL(url).copy_with(username=None, password=None))
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return "(invalid URL)"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # the legacy spellings the resolver would accept: 2130706433, 0x7f000001, 127.1
        packed = socket.inet_aton(host)
    except (OSError, ValueError):
        return None
    return ipaddress.IPv4Address(packed)
