"""Which peers the emulators' Google APIs answer: loopback in every spelling, nothing else."""

from __future__ import annotations

import pytest

from hookyard.emulator_access import is_loopback


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("192.0.2.7", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False),
     ("0.0.0.0", False), ("", False), (None, False), ("localhost", False), ("not an ip", False)],
)  # fmt: skip
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback
