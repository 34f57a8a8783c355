"""Which notify_url destinations may be called: every spelling of a forbidden address."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from common.egress import (
    DestinationRefused,
    DestinationUnresolved,
    EgressPolicy,
    redacted,
    resolve,
)

STRICT = EgressPolicy()
LOOPBACK_ALLOWED = EgressPolicy(allow_loopback=True)

LOOPBACK_URLS = [
    "http://127.0.0.1/hook",
    "http://127.0.0.2:8080/hook",
    "http://2130706433/hook",  # decimal
    "http://0x7f000001/hook",  # hex
    "http://0x7f.1/hook",
    "http://127.1/hook",  # short form
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:7f00:1]/hook",
]
NEVER_URLS = [
    "http://169.254.169.254/computeMetadata/v1/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://METADATA.GOOGLE.INTERNAL/",
    "http://Metadata.Google.Internal../",
    "http://metadata/",
    "http://metadata./",
    "http://metadata.goog/",
    "http://0177.0.0.1/hook",  # octal: not even a URL to httpx, so never called
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://10.0.0.1/",
    "http://167772161/",  # 10.0.0.1, decimal
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://[::ffff:192.168.1.1]/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://169.254.1.1/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",  # documentation
    "http://[2001:db8::1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible (deprecated)
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[2002:a00:1::]/",  # 6to4 around 10.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
    "http://[64:ff9b::7f00:1]/",  # NAT64 around 127.0.0.1
    "http://[2001::1]/",  # Teredo
]
PUBLIC_URLS = [
    "https://example.com/hook",
    "https://hooks.example.com:8443/balance?x=1",
    "http://8.8.8.8/",
    "http://134744072/",  # 8.8.8.8, decimal
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",  # NAT64 around 8.8.8.8
]


@pytest.mark.parametrize("url", LOOPBACK_URLS + NEVER_URLS)
def test_strict_policy_refuses(url: str) -> None:
    with pytest.raises(DestinationRefused):
        STRICT.destination(url)


@pytest.mark.parametrize("url", NEVER_URLS)
def test_allowing_loopback_allows_nothing_else(url: str) -> None:
    with pytest.raises(DestinationRefused):
        LOOPBACK_ALLOWED.destination(url)


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_loopback_only_when_allowed(url: str) -> None:
    destination = LOOPBACK_ALLOWED.destination(url)
    assert destination.literal is not None
    assert STRICT.refusal(destination.literal) == "loopback"


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_public_destinations_pass(url: str) -> None:
    STRICT.destination(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com/", "http or https"),
        ("http://user:pass@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http:///nohost", "no host"),
    ],
)
def test_shape_rules(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        STRICT.destination(url)


def test_the_reason_names_the_address_and_its_class_but_never_credentials() -> None:
    with pytest.raises(DestinationRefused) as refused:
        STRICT.destination("http://2130706433/hook")
    assert refused.value.reason == "points at 127.0.0.1 (loopback)"
    with pytest.raises(DestinationRefused) as metadata:
        STRICT.destination("http://169.254.169.254/")
    assert "metadata" in metadata.value.reason
    with pytest.raises(DestinationRefused) as credentials:
        STRICT.destination("http://admin:hunter2@example.com/")
    assert "hunter2" not in credentials.value.reason
    assert redacted("http://admin:hunter2@example.com/h") == "http://example.com/h"


def _answers(*addresses: str) -> Any:
    """A resolver with fixed answers in getaddrinfo's shape: no DNS in a unit test."""

    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return lookup


def _fails(error: OSError) -> Any:
    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise error

    return lookup


def test_every_resolved_address_is_judged() -> None:
    destination = STRICT.destination("https://hooks.example.com/balance")
    public = resolve(STRICT, destination, _answers("93.184.215.14", "2606:2800:21f::1"))
    assert [str(a) for a in public] == ["93.184.215.14", "2606:2800:21f::1"]
    for mixed in (("93.184.215.14", "10.0.0.7"), ("2606:2800:21f::1", "::ffff:127.0.0.1")):
        with pytest.raises(DestinationRefused, match="resolves to"):
            resolve(STRICT, destination, _answers(*mixed))
    with pytest.raises(DestinationRefused, match=r"169\.254\.169\.254"):
        resolve(LOOPBACK_ALLOWED, destination, _answers("169.254.169.254"))
    assert resolve(LOOPBACK_ALLOWED, destination, _answers("127.0.0.1", "::1"))


def test_a_name_that_does_not_resolve_is_transient_not_refused() -> None:
    destination = STRICT.destination("https://not-yet.example.com/")
    with pytest.raises(DestinationUnresolved):
        resolve(STRICT, destination, _fails(socket.gaierror(socket.EAI_NONAME, "unknown")))
    with pytest.raises(DestinationUnresolved):
        resolve(STRICT, destination, _answers())


def test_the_request_is_pinned_to_the_judged_address_with_the_name_in_host_and_sni() -> None:
    destination = STRICT.destination("https://Hooks.Example.com:8443/balance?x=1")
    pinned = destination.pinned_to(ipaddress.ip_address("2606:2800:21f::1"))
    assert str(pinned.url) == "https://[2606:2800:21f::1]:8443/balance?x=1"
    assert pinned.host_header == "hooks.example.com:8443"
    assert pinned.extensions == {"sni_hostname": "hooks.example.com"}
    plain = STRICT.destination("http://hooks.example.com/b").pinned_to(
        ipaddress.ip_address("93.184.215.14")
    )
    assert (str(plain.url), plain.host_header, plain.extensions) == (
        "http://93.184.215.14/b", "hooks.example.com", {},
    )  # fmt: skip


def test_loopback_can_be_allowed_locally_but_never_in_gcp(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from common.config import Settings

    for name in ("HOOKYARD_ENV", "HOOKYARD_NOTIFY_ALLOW_LOOPBACK"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().notify_allow_loopback is False
    assert Settings(env="gcp").notify_allow_loopback is False
    assert Settings(notify_allow_loopback=True).notify_allow_loopback is True
    with pytest.raises(ValidationError, match="HOOKYARD_NOTIFY_ALLOW_LOOPBACK"):
        Settings(env="gcp", notify_allow_loopback=True)
