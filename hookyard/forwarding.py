"""Forwarding a stored event to a developer's own app, signed with Standard Webhooks.

`hookyard listen` and `hookyard forward` (later `events resend --to`) post the exact bytes
the sender signed, so the app parses what production will send it; the signature is ours,
not the sender's (the app cannot hold every sender's secret), under a key we print so the
app can verify it with any Standard Webhooks library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from common.errors import UsageError
from common.secrets import EnvSecretStore, env_var_for

SECRET_NAME = "listen-signing-secret"  # noqa: S105 (a secret's name, not a value)
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix)
GENERATED_KEY_BYTES = 24
KEY_BYTES = range(24, 65)  # what the Standard Webhooks spec asks of a key
USER_AGENT = "Hookyard-Listen/1"
# Long enough for an app paused at a breakpoint to answer, short enough never to hang.
FORWARD_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
_ID_ROOM = 100


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the app said: its status, or why there was no answer (never both)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode()


def checked_signing_secret(value: str) -> str:
    """A `whsec_` key whose base64 decodes to 24-64 bytes, as the app's library will read it."""
    text = value.strip()
    if not text.startswith(SECRET_PREFIX):
        raise UsageError("--signing-secret must start with whsec_")
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("--signing-secret must be whsec_ followed by base64") from None
    if len(key) not in KEY_BYTES:
        raise UsageError("--signing-secret must hold 24 to 64 bytes of key")
    return text


def stored_signing_secret(secrets_dir: Path) -> tuple[str, Path | None]:
    """The key kept from an earlier run (or `HOOKYARD_SECRET_LISTEN_SIGNING_SECRET`), else a
    new one saved for the next run, so the app's configuration survives a restart of
    `listen`. Returns the key and where it was saved (None: from the environment, or not
    savable)."""
    store = EnvSecretStore(files_dir=secrets_dir)
    kept = store.values(SECRET_NAME)
    path = secrets_dir / SECRET_NAME
    if kept:
        from_env = env_var_for(SECRET_NAME) in os.environ
        try:
            return checked_signing_secret(kept[0]), None if from_env else path
        except UsageError:
            where = env_var_for(SECRET_NAME) if from_env else str(path)
            raise UsageError(f"{where} is not a whsec_ key of 24 to 64 bytes") from None
    secret = new_signing_secret()
    try:
        secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `listen` saved one first: use the same
        return stored_signing_secret(secrets_dir)
    except OSError:
        return secret, None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret, path


def checked_forward_url(url: str) -> str:
    """http(s) with a host; loopback is the point (the developer's own app)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(
            f"--forward-to must be an http(s) URL, e.g. http://localhost:5000/hooks, not {url!r}"
        )
    return url.strip()


def shown_url(url: str) -> str:
    """The URL as printed: credentials in it stay out of the terminal."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def webhook_id(source: str, event_id: str) -> str:
    """`evt_<source>_<event id>`: stable, so the app dedupes a resend as it would a retry.
    Characters outside [A-Za-z0-9_-] become `_`; a hash then keeps two ids that would
    read the same apart, and bounds the length."""
    raw = f"{source}_{event_id}"
    safe = _UNSAFE_ID.sub("_", raw)
    if safe != raw or len(safe) > _ID_ROOM:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        safe = f"{safe[: _ID_ROOM - 17]}_{digest}"
    return f"evt_{safe}"


def signed_headers(
    secret: str,
    *,
    msg_id: str,
    body: bytes,
    now: datetime,
    content_type: str,
    source: str,
    event_type: str | None,
    event_id: str,
) -> dict[str, str]:
    """Standard Webhooks headers over `body` exactly, plus where the event came from."""
    from standardwebhooks.webhooks import Webhook, hmac_data

    when = now.astimezone(UTC)
    hook = Webhook(secret)
    try:
        signature = hook.sign(msg_id, when, body.decode("utf-8"))
    except UnicodeDecodeError:
        # The library signs text; the spec signs bytes. Same HMAC, over the raw bytes.
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        signed = f"{msg_id}.{int(when.timestamp())}.".encode() + body
        signature = "v1," + base64.b64encode(hmac_data(key, signed)).decode()
    headers = {
        "Content-Type": content_type,
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "Hookyard-Source": header_safe(source),
        "Hookyard-Event-Id": header_safe(event_id),
    }
    if event_type:
        headers["Hookyard-Event-Type"] = header_safe(event_type)
    return headers


def header_safe(value: str) -> str:
    """Printable ASCII only: a header value from a sender's data must not split headers."""
    return "".join(ch for ch in value if 0x20 <= ord(ch) < 0x7F)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
    """One POST; any way the app fails to answer becomes a short reason, never an exception."""
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Delivery(status=None, error=failure_reason(exc))
    return Delivery(status=response.status_code)


def failure_reason(exc: httpx.HTTPError) -> str:
    """Names the failure class; httpx's own text may quote the URL (and its credentials)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        refused = "refused" in str(exc).lower() or isinstance(exc.__cause__, ConnectionRefusedError)
        return "connection refused" if refused else "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed without a response"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "invalid URL"
    return type(exc).__name__


def forward_client() -> httpx.Client:
    """No redirects (a signed POST is not replayed elsewhere) and no proxies from the
    environment: the app is usually on this machine."""
    return httpx.Client(timeout=FORWARD_TIMEOUT, follow_redirects=False, trust_env=False)


def now() -> datetime:
    return datetime.now(UTC)
