"""`hookyard listen --forward-to URL` and `hookyard forward SOURCE EVENT_ID --to URL`.

The developer loop, as `stripe listen` offers it: every event the stack verifies is
forwarded to the developer's app, signed with Standard Webhooks under a key printed at
start, and reported in one line. It reads the event log through the admin API (polling
with a cursor), so it works against the laptop stack and a deployment alike, and the
stack being down is waited out, never a crash.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from fnmatch import fnmatchcase
from types import FrameType
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console

from common.config import Settings
from common.errors import SecretUnavailable, UsageError
from hookyard.admin_client import AdminError, AdminUnreachable
from hookyard.event_cursor import Position, log_id
from hookyard.event_feed import Erased, EventFeed, is_transient
from hookyard.forwarding import (
    checked_forward_url,
    checked_signing_secret,
    forward_client,
    now,
    post,
    shown_url,
    signed_headers,
    stored_signing_secret,
    webhook_id,
)
from hookyard.listen_lines import Forwarded, json_line, text_line
from hookyard.operator_cli import JsonOption, SourceOption, TokenOption, UrlOption, stack_url

PAGE_LIMIT = 100
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
JsonEvent = dict[str, Any]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class Since(StrEnum):
    NOW = "now"
    ALL = "all"


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
            if self._down:
                self._down = False
                self.notice(f"stack at {self.feed.base_url} is back")
            return result


def _reason(exc: AdminError | AdminUnreachable) -> str:
    if isinstance(exc, AdminError):
        return f"the stack answered {exc.status}: {exc.detail}"
    return str(exc)


# -- commands ---------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)
    app.command("forward")(forward)


ForwardSecretOption = Annotated[
    str | None,
    typer.Option(
        "--signing-secret",
        help="Standard Webhooks key (whsec_…) to sign with (default: the one kept in"
        " <data dir>/secrets/listen-signing-secret, generated on first use).",
        show_default=False,
    ),
]


def listen(
    *,
    forward_to: Annotated[
        str,
        typer.Option(
            "--forward-to", help="Your app's webhook URL, e.g. http://localhost:5000/hooks."
        ),
    ],
    source: SourceOption = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "--types",
            metavar="TYPE[,TYPE]",
            help="Only these event types (comma-separated or repeated; globs allowed).",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines (the default when stdout is not a TTY).")
    ] = False,
    signing_secret: ForwardSecretOption = None,
    since: Annotated[
        Since, typer.Option(help="now: only events arriving from now on; all: the whole log.")
    ] = Since.NOW,
    poll_interval: Annotated[
        float, typer.Option(min=0.1, max=10.0, help="Seconds between polls of the event log.")
    ] = 0.5,
) -> None:
    """Forward every verified event to your app as it arrives, signed with Standard
    Webhooks, one line each; Ctrl-C stops."""
    with _command_errors(url, token) as (base, secret_token):
        target = _target(forward_to, signing_secret)
        selection = Selection(source, parse_types(types))
        emit = _printer(as_json or not sys.stdout.isatty())
        with _stops_on_signals(), EventFeed(base, secret_token) as feed, forward_client() as client:
            listener = Listener(
                feed, client, target, selection, interval=poll_interval, emit=emit,
                notice=lambda message: typer.echo(message, err=True),
            )  # fmt: skip
            try:
                position = listener.start(since)
                what = ", ".join(selection.types) or "all"
                typer.echo(
                    f"> Forwarding {selection.source or 'every source'} events ({what} types)"
                    f" from {base} to {shown_url(target.url)}",
                    err=True,
                )
                typer.echo(
                    f"> Ready! Your webhook signing secret is {target.secret} (Ctrl-C to quit)",
                    err=True,
                )
                listener.run(position)
            except KeyboardInterrupt:
                typer.echo("> stopped", err=True)


def forward(
    *,
    source: Annotated[str, typer.Argument(help="Webhook source, e.g. stripe.")],
    event_id: Annotated[str, typer.Argument(help="The event's id, as `events list` shows it.")],
    to: Annotated[str, typer.Option("--to", help="Your app's webhook URL.")],
    signing_secret: ForwardSecretOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Forward one stored event to your app once, signed as `listen` signs, and print what
    the app answered (exit 1 unless it was 2xx)."""
    with _command_errors(url, token) as (base, secret_token):
        target = _target(to, signing_secret)
        with EventFeed(base, secret_token) as feed, forward_client() as client:
            line = forward_once(feed, client, target, source, event_id)
    if signing_secret is None:
        typer.echo(f"signing secret: {target.secret}", err=True)
    _printer(as_json or not sys.stdout.isatty())(line)
    if line.status is None or not 200 <= line.status < 300:
        raise typer.Exit(code=1)


def _target(url: str, signing_secret: str | None) -> Target:
    checked = checked_forward_url(url)
    if signing_secret is not None:
        return Target(checked, checked_signing_secret(signing_secret))
    secret, _saved = stored_signing_secret(Settings().data_dir / "secrets")
    return Target(checked, secret)


@contextmanager
def _command_errors(url: str | None, token: str | None) -> Iterator[tuple[str, str]]:
    """The stack's URL and admin token; misuse is exit 2, the API's refusals and no token
    exit 1, each one line."""
    from hookyard.admin_client import NoAdminToken, resolve_token
    from hookyard.cli import fail, usage

    base = stack_url(url)
    try:
        admin_token = resolve_token(token)
    except NoAdminToken as exc:
        raise fail(str(exc)) from None
    try:
        yield base, admin_token
    except UsageError as exc:
        raise usage(str(exc)) from None
    except AdminError as exc:
        raise fail(exc.detail) from None
    except (AdminUnreachable, SecretUnavailable) as exc:
        raise fail(str(exc)) from None


def _printer(as_json: bool) -> Callable[[Forwarded], None]:
    if as_json:
        return lambda line: typer.echo(json_line(line))
    console = Console(highlight=False)

    def show(line: Forwarded) -> None:
        console.print(text_line(replace(line, at=line.at.astimezone())), soft_wrap=True)

    return show


@contextmanager
def _stops_on_signals() -> Iterator[None]:
    """SIGTERM stops like Ctrl-C: the same clean exit, clients closed on the way out. SIGINT
    is set too: a shell starts `listen … &` with it ignored, and `kill -INT` must still stop."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
