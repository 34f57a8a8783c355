"""Which gRPC peers the local Pub/Sub API serves: loopback only, however grpc spells it."""

from __future__ import annotations

import pytest

from hookyard.broker.grpc_api import is_loopback_peer


@pytest.mark.parametrize(
    "peer",
    [
        "ipv4:127.0.0.1:50000",
        "ipv4:127.8.9.10:1",
        "ipv6:[::1]:50000",
        "ipv6:%5B::1%5D:50000",
        "ipv6:%5B::ffff:127.0.0.1%5D:50000",
    ],
)
def test_loopback_peers_are_served(peer: str) -> None:
    assert is_loopback_peer(peer)


@pytest.mark.parametrize(
    "peer",
    [
        "ipv4:10.0.0.5:50000",
        "ipv4:0.0.0.0:1",
        "ipv6:%5B2001:db8::1%5D:50000",
        "ipv6:%5B::ffff:10.0.0.5%5D:50000",
        "ipv6:%5Bfe80::1%25eth0%5D:50000",
        "unix:/tmp/socket",
        "ipv4:localhost:50000",
        "ipv4:127.0.0.1.evil:1",
        "",
        "garbage",
    ],
)
def test_other_peers_are_refused(peer: str) -> None:
    assert not is_loopback_peer(peer)
