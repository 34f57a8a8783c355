"""Which stack a CLI command talks to: one base URL, named the same way by every command.

`--url`, else `HOOKYARD_URL`, else where `hookyard dev` listens: an explicit
`HOOKYARD_HOST`/`HOOKYARD_PORT`, else the URL the running stack recorded in its data
directory, so `HOOKYARD_PORT=18300 make run` in one terminal and a plain `hookyard send …`
in another meet with no further flags. Every command appends its own path (`/webhooks/stripe`,
`/admin/…`, `/cron/…`), so the one URL serves the laptop stack and a deployment alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from common.config import Settings

URL_ENV = "HOOKYARD_URL"
DEPRECATED_URL_ENV = "HOOKYARD_ADMIN_URL"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A stack bound to every interface is reached through loopback.
_CONNECTABLE = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


class InvalidStackUrl(ValueError):
    """Not an http(s) URL with a host; the message says what is expected."""


RECORD_NAME = "stack-url"
_ADDRESS_ENV = frozenset({"HOOKYARD_HOST", "HOOKYARD_PORT"})


def record_path(data_dir: Path) -> Path:
    """Written by `hookyard dev` once it listens, removed when it stops."""
    return data_dir / RECORD_NAME


PUBSUB_RECORD_NAME = "pubsub-emulator-host"


def pubsub_record_path(data_dir: Path) -> Path:
    """`HOST:PORT` of the running stack's Pub/Sub gRPC API, kept like the URL record."""
    return data_dir / PUBSUB_RECORD_NAME


def default_stack_url(settings: Settings) -> str:
    """Where `hookyard dev` listens: as the environment says, else as the running stack
    recorded, else `http://{HOOKYARD_HOST}:{HOOKYARD_PORT}` from the defaults."""
    if not _ADDRESS_ENV & os.environ.keys():
        try:
            recorded = record_path(settings.data_dir).read_text(encoding="utf-8").strip()
        except OSError:
            recorded = ""
        if recorded:
            try:
                return checked_stack_url(recorded)
            except InvalidStackUrl:
                pass
    host = _CONNECTABLE.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def checked_stack_url(url: str) -> str:
    """The base URL without a trailing slash; refuses what httpx would fail on obscurely."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidStackUrl(f"{url!r} is not a base URL; expected one like http://127.0.0.1:8080")
    if parts.query or parts.fragment:
        raise InvalidStackUrl(f"{url!r}: a base URL has no query or fragment")
    return url.strip().rstrip("/")


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def unreachable_message(url: str) -> str:
    """The one line every command prints when nothing answers at `url`."""
    hint = " — is `make run` running?" if is_loopback(url) else ""
    return f"stack not reachable at {url}{hint}"
