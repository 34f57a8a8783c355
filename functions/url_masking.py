"""How a stored URL is shown to an operator: where it points, never what authorises it."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "…"


def masked_url(url: str) -> str:
    """`url` with its userinfo, query string and fragment each replaced by `…`.

    Receivers often authenticate with a token in the query (`?token=`) or in userinfo; the
    scheme, host, port and path are what tell an operator which receiver it was. Text that
    does not parse as a URL (a port that is not a number) is masked whole, not guessed at.
    """
    parts = _split(url)
    if parts is None:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = MASK if parts.query else ""
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def is_masked(url: str) -> bool:
    """A URL as `masked_url` shows it, even percent-encoded: sending one back (a GET's body
    PUT again) must not replace the receiver's real URL with its masked copy."""
    return MASK in url or "%E2%80%A6" in url.upper()


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        port_is_valid = parts.port is None or parts.port >= 0
    except ValueError:
        return None
    return parts if port_is_valid else None
