"""`hookyard listen --forward-to URL` and `hookyard forward SOURCE EVENT_ID --to URL`.

The developer loop, as `stripe listen` offers it: every event the stack verifies is
forwarded to the developer's app, signed with Standard Webhooks under a key printed at
start, and reported in one line. It reads the event log through the admin API (polling
with a cursor), so it works against the laptop stack and a deployment alike, and the
stack being down is waited out, never a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

import httpx

from hookyard.admin_client import AdminError, AdminUnreachable
from hookyard.event_cursor import Position, log_id
from hookyard.event_feed import Erased, EventFeed, is_transient
from hookyard.forwarding import (
    now,
    post,
    signed_headers,
    webhook_id,
)
from hookyard.listen_commands import Since
from hookyard.listen_lines import Forwarded

PAGE_LIMIT = 100
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
JsonEvent = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events to forward. One plain type is filtered by the server; several, or a
    glob (`payment_intent.*`), here."""

    source: str | None
    types: tuple[str, ...] = ()

    @property
    def server_type(self) -> str | None:
        if len(self.types) == 1 and not any(ch in self.types[0] for ch in "*?["):
            return self.types[0]
        return None

    def matches(self, event: JsonEvent) -> bool:
        if not self.types:
            return True
        kind = event.get("event_type")
        return isinstance(kind, str) and any(fnmatchcase(kind, t) for t in self.types)


def parse_types(values: list[str] | None) -> tuple[str, ...]:
    """`--types a,b` and `--type a --type b` alike."""
    return tuple(t.strip() for raw in values or [] for t in raw.split(",") if t.strip())


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secret: str


def forward_event(
    feed: EventFeed,
    client: httpx.Client,
    target: Target,
    event: JsonEvent,
    clock: Callable[[], Any] = now,
) -> Forwarded:
    """Fetches the event's stored bytes and POSTs them, signed, to the app. Only the admin
    API failing raises; whatever the app does is the returned line."""
    source, event_id = str(event.get("source")), str(event.get("event_id"))
    try:
        stored = feed.payload(source, event_id)
    except AdminError as exc:
        if exc.status != 404:
            raise
        return Forwarded.skipped(clock(), event, "event not found")
    if isinstance(stored, Erased):
        return Forwarded.skipped(clock(), event, "payload erased")
    msg_id = webhook_id(source, event_id)
    kind = event.get("event_type")
    headers = signed_headers(
        target.secret, msg_id=msg_id, body=stored.body, now=clock(),
        content_type=stored.content_type, source=source,
        event_type=kind if isinstance(kind, str) else None, event_id=event_id,
    )  # fmt: skip
    delivery = post(client, target.url, stored.body, headers)
    return Forwarded.of(clock(), event, msg_id, delivery)


def forward_once(
    feed: EventFeed, client: httpx.Client, target: Target, source: str, event_id: str
) -> Forwarded:
    """One stored event to `target`, signed as `listen` signs (what `events resend --to`
    does). An unknown event is the admin API's 404 (`AdminError`)."""
    return forward_event(feed, client, target, feed.event(source, event_id))


class Listener:
    """Polls the event log after a `Position` and forwards each new event once, in order."""

    def __init__(
        self,
        feed: EventFeed,
        client: httpx.Client,
        target: Target,
        selection: Selection,
        *,
        interval: float,
        emit: Callable[[Forwarded], None],
        notice: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.feed, self.client, self.target, self.selection = feed, client, target, selection
        self.interval, self.emit, self.notice, self.sleep = interval, emit, notice, sleep
        self._down = False

    def start(self, since: Since) -> Position:
        """Where forwarding begins: after the newest event now in the log, or at the start."""
        return self._retrying(lambda: self._start(since))

    def run(self, position: Position) -> None:
        """Forever; the caller stops it with KeyboardInterrupt."""
        while True:
            more = self._retrying(lambda: self.poll(position))
            if not more:
                self.sleep(self.interval)

    def poll(self, position: Position) -> bool:
        """One page; True when another is already waiting."""
        page = self.feed.page(
            source=self.selection.source, event_type=self.selection.server_type,
            cursor=position.query(), limit=PAGE_LIMIT,
        )  # fmt: skip
        self._answered()  # said before this page's lines, not after them
        for item in page.items:
            if not position.is_new(item):
                continue
            if self.selection.matches(item):
                self.emit(forward_event(self.feed, self.client, self.target, item))
            position.take(item)
        position.page_done()
        return page.next_cursor is not None

    def _start(self, since: Since) -> Position:
        position = Position()
        if since is Since.ALL:
            return position
        position.high = self._newest()
        position.start_here()
        return position

    def _newest(self) -> int:
        """The newest id, in one request; 0 for an empty log."""
        page = self.feed.page(
            source=self.selection.source, event_type=self.selection.server_type,
            cursor=None, limit=1, newest_first=True,
        )  # fmt: skip
        return log_id(page.items[0]) or 0 if page.items else 0

    def _retrying(self, step: Callable[[], T]) -> T:
        """Runs `step` until the admin API lets it finish; says once that the stack is away,
        and once that it is back. Errors that waiting cannot fix propagate."""
        delay = BACKOFF_START_S
        while True:
            try:
                result = step()
            except (AdminError, AdminUnreachable) as exc:
                if not is_transient(exc):
                    raise
                if not self._down:
                    self._down = True
                    self.notice(f"{_reason(exc)}; retrying")
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._answered()
            return result

    def _answered(self) -> None:
        """The admin API answered: if it had been away, say once that it is back."""
        if self._down:
            self._down = False
            self.notice(f"stack at {self.feed.base_url} is back")


def _reason(exc: AdminError | AdminUnreachable) -> str:
    if isinstance(exc, AdminError):
        return f"the stack answered {exc.status}: {exc.detail}"
    return str(exc)


# -- commands ---------------------------------------------------------------------------------
