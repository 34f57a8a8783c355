"""Delivers one `balance.updated` notification, signed with Standard Webhooks.

`webhook-id` is the outbox id, so a receiver dedupes a redelivery. The HTTP call runs
outside any database transaction: a slow receiver must not hold a pooled connection or a
row lock; the rare concurrent double-send is exactly what the receiver's dedup absorbs.

The URL is judged again here (`common.egress`), whatever the admin API accepted: DNS
changes. The request goes to an address that was judged, with `Host` and TLS SNI naming the
host, so the client never resolves the name a second time. A refused destination is a dead
letter with the reason (the row stays pending): unlike a 410, it is our policy rather than
the receiver's wish, an operator should see it, and a replay delivers once the URL is fixed.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import Engine

from common import bounded_json
from common.db import accounts, outbox
from common.egress import (
    DestinationRefused,
    DestinationUnresolved,
    EgressPolicy,
    Lookup,
    redacted,
    resolve,
)
from common.errors import PermanentError, TransientError
from common.lazy import Lazy
from common.logging import get_logger
from common.secrets import SecretStore

log = get_logger(__name__)

SIGNING_KEY = "notify-signing-key"
GONE = 410


class Notifier:
    def __init__(
        self,
        engine: Engine,
        secrets: SecretStore,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        egress: EgressPolicy | None = None,
        lookup: Lookup = socket.getaddrinfo,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._engine = engine
        self._secrets = secrets
        self._timeout = timeout_s
        self._clock = clock
        self._egress = egress or EgressPolicy()
        self._lookup = lookup
        # No proxies from the environment (they would choose where we connect), and no
        # kept-alive connections: the pool keys on the address, so a connection opened for
        # one host name could carry a request for another name on the same address.
        self._http = Lazy(
            lambda: httpx.Client(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                verify=tls if tls is not None else True,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        )

    def close(self) -> None:
        if self._http.built is not None:
            self._http.built.close()

    def __call__(self, body: bytes) -> None:
        outbox_id = _outbox_id(body)
        with self._engine.connect() as conn:
            row = outbox.get(conn, outbox_id)
            account = accounts.get(conn, row.account_id) if row else None
        if row is None or account is None:
            raise PermanentError(f"outbox row {outbox_id} does not exist")
        if row.state != "pending":
            log.info("notification already settled", outbox_id=outbox_id, state=row.state)
            return
        if not account.notifications_enabled or account.notify_url is None:
            self._settle(outbox_id, "skipped")
            return
        self._send(outbox_id, account.notify_url, json.dumps(row.payload, separators=(",", ":")))

    def _send(self, outbox_id: int, url: str, payload: str) -> None:
        from standardwebhooks.webhooks import Webhook

        keys = self._secrets.values(SIGNING_KEY)
        if not keys:
            raise TransientError("notify-signing-key is not configured")
        msg_id = str(outbox_id)
        now = datetime.fromtimestamp(int(self._clock()), UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Hookyard-Notifications/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(keys[0]).sign(msg_id, now, payload),
        }
        began = time.monotonic()
        status: int | None = None
        error: str | None = None
        refused: DestinationRefused | None = None
        try:
            status = self._post(url, payload.encode(), headers)
        except DestinationRefused as exc:
            refused, error = exc, f"notify_url refused: {exc.reason}"
        except DestinationUnresolved as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        elapsed_ms = int((time.monotonic() - began) * 1000)
        with self._engine.begin() as conn:
            outbox.record_attempt(
                conn, outbox_id=outbox_id, url=redacted(url), status=status, error=error,
                duration_ms=elapsed_ms,
            )  # fmt: skip
            if status is not None and 200 <= status < 300:
                outbox.settle(conn, outbox_id, "delivered")
            elif status == GONE:
                outbox.settle(conn, outbox_id, "disabled")
                accounts.disable_notifications(conn, url)
            else:
                outbox.count_attempt(conn, outbox_id)
        log.info("notification attempt", outbox_id=outbox_id, status=status, error=error,
                 duration_ms=elapsed_ms)  # fmt: skip
        if refused is not None:
            raise PermanentError(f"notify_url refused: {refused.reason}") from refused
        if status == GONE:
            log.warning("receiver answered 410 Gone; notifications disabled for it")
        elif status is None or not 200 <= status < 300:
            raise TransientError(f"receiver answered {status or error}")

    def _post(self, url: str, content: bytes, headers: dict[str, str]) -> int:
        destination = self._egress.destination(url)
        addresses = resolve(self._egress, destination, self._lookup)
        client = self._http.get()
        failure: httpx.ConnectError | None = None
        for address in addresses:
            pinned = destination.pinned_to(address)
            try:
                response = client.post(
                    pinned.url,
                    content=content,
                    headers={**headers, "Host": pinned.host_header},
                    extensions=pinned.extensions,
                )
            except httpx.ConnectError as exc:  # refused or unreachable: the next address
                failure = exc
                continue
            return response.status_code
        assert failure is not None
        raise failure

    def _settle(self, outbox_id: int, state: str) -> None:
        with self._engine.begin() as conn:
            outbox.settle(conn, outbox_id, state)
        log.info("notification settled without sending", outbox_id=outbox_id, state=state)


def _outbox_id(body: bytes) -> int:
    try:
        value = bounded_json.loads(body)["outbox_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError("task body has no outbox_id") from exc
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PermanentError("outbox_id must be a positive integer")
    return value
