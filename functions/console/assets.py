"""Which file a console path names: the shell for every page, or one of the static assets.

Pure except for reading the packaged files, which are read once and kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}
SHELL = "shell.html"
# A page's own segments (an account id, an event id, a dead letter id) are ids the admin
# API validates; anything else (NUL, dot segments, very long names) names no page.
_SEGMENT = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_PAGES: dict[str, int] = {
    "": 0,
    "events": 0,
    "dead-letters": 1,
    "replays": 1,
    "accounts": 1,
    "audit": 0,
}
"""Each page by its first segment, with how many id segments may follow it."""
_EVENT_KEY = 2


@dataclass(frozen=True)
class Asset:
    name: str
    media_type: str

    def body(self) -> bytes:
        return _read(self.name)


def asset_for(path: str) -> Asset | None:
    """`path` is what follows `/console`; None when it names nothing the console serves."""
    if path in ("", "/"):
        return Asset(SHELL, "text/html")
    if not path.startswith("/"):
        return None
    parts = path[1:].removesuffix("/").split("/")
    if parts[0] == "static":
        if len(parts) == 2 and parts[1] in STATIC:
            return Asset(parts[1], STATIC[parts[1]])
        return None
    page, ids = parts[0], parts[1:]
    allowed = _EVENT_KEY if page == "events" else _PAGES.get(page)
    if allowed is None or page == "" or len(ids) not in {0, allowed}:
        return None
    if not all(_SEGMENT.fullmatch(part) and part.strip(".") for part in ids):
        return None
    return Asset(SHELL, "text/html")


@cache
def _read(name: str) -> bytes:
    return files(__package__).joinpath("static", name).read_bytes()
