"""What an operator is shown of a notify URL: where it points, never what authorises it."""

from __future__ import annotations

import pytest

from functions.url_masking import masked_url


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("https://example.com/hooks/balance", "https://example.com/hooks/balance"),
        ("http://127.0.0.1:8123/h", "http://127.0.0.1:8123/h"),
        ("https://example.com/h?token=s3cret", "https://example.com/h?…"),
        ("https://example.com/h?a=1&b=2#frag", "https://example.com/h?…#…"),
        ("https://example.com/h#access_token=s3cret", "https://example.com/h#…"),
        ("https://admin:hunter2@example.com/h", "https://…@example.com/h"),
        ("https://hunter2@example.com:8443/h?k=v", "https://…@example.com:8443/h?…"),
        ("https://user:p@ss@example.com/h", "https://…@example.com/h"),
        ("https://[2001:db8::1]:8443/h?k=v", "https://[2001:db8::1]:8443/h?…"),
        ("https://example.com/h?", "https://example.com/h"),
    ],
)
def test_userinfo_query_and_fragment_are_masked(stored: str, shown: str) -> None:
    assert masked_url(stored) == shown


@pytest.mark.parametrize(
    "stored",
    [
        "https://user:hunter2/x@example.com/h",  # unescaped '/' in a password: no port parses
        "https://admin:hunter2@example.com:notaport/h",
        "https://[2001:db8::1/h?token=hunter2",
    ],
)
def test_what_does_not_parse_is_masked_whole(stored: str) -> None:
    assert masked_url(stored) == "…"


def test_no_secret_survives_in_any_masked_form() -> None:
    for stored in (
        "https://u:hunter2@example.com/h?token=hunter2#hunter2",
        "http://hunter2@example.com/?hunter2",
        "https://example.com/h?x=1&token=hunter2",
    ):
        assert "hunter2" not in masked_url(stored), stored
