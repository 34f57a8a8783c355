"""The one thing code needs from headers or attributes: a lookup by name."""

from __future__ import annotations

from typing import Protocol


class HeaderLookup(Protocol):
    """A dict of message attributes or a request's case-insensitive headers."""

    def get(self, key: str, /) -> str | None: ...
