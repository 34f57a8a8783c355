"""`hookyard listen` and `hookyard forward`: the commands. Light to import, as every module
`hookyard.cli` loads must be: a malformed setting is reported in one line by the command,
not as a traceback at import, so what reads settings or secrets is imported when a command
runs (`hookyard.listen`, `hookyard.forwarding`, `hookyard.event_feed`)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from common.errors import UsageError
from hookyard import json_output as json_fields
from hookyard.json_output import JqOption, JsonOption, JsonOutput, json_output
from hookyard.operator_cli import SourceOption, TokenOption, UrlOption, stack_url

if TYPE_CHECKING:
    from hookyard.listen import Target
    from hookyard.listen_lines import Forwarded

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Since(StrEnum):
    NOW = "now"
    ALL = "all"


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
        str | None,
        typer.Option(
            "--json",
            metavar="[FIELDS]",
            help="JSON lines (the default when stdout is not a TTY); --json a,b: those fields.",
            show_default=False,
        ),
    ] = None,
    jq: JqOption = None,
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
    from hookyard.event_feed import EventFeed
    from hookyard.forwarding import forward_client, shown_url
    from hookyard.listen import Listener, Selection, parse_types

    out = json_output(as_json, jq, json_fields.FORWARDED)
    with _command_errors(url, token) as (base, secret_token):
        target = _target(forward_to, signing_secret)
        selection = Selection(source, parse_types(types))
        emit = _printer(out)
        with _stops_on_signals(), EventFeed(base, secret_token) as feed, forward_client() as client:
            listener = Listener(
                feed, client, target, selection, interval=poll_interval, emit=emit,
                notice=lambda message: typer.echo(message, err=True),
            )  # fmt: skip
            try:
                position = listener.start(since)
                which = (
                    f"{selection.source} events" if selection.source else "events of every source"
                )
                what = ", ".join(selection.types) or "all"
                typer.echo(
                    f"> Forwarding {which} ({what} types) from {base} to {shown_url(target.url)}",
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
    as_json: JsonOption = None,
    jq: JqOption = None,
) -> None:
    """Forward one stored event to your app once, signed as `listen` signs, and print what
    the app answered (exit 1 unless it was 2xx)."""
    from hookyard.event_feed import EventFeed
    from hookyard.forwarding import forward_client
    from hookyard.listen import forward_once

    out = json_output(as_json, jq, json_fields.FORWARDED)
    with _command_errors(url, token) as (base, secret_token):
        target = _target(to, signing_secret)
        with EventFeed(base, secret_token) as feed, forward_client() as client:
            line = forward_once(feed, client, target, source, event_id)
    if signing_secret is None:
        typer.echo(f"signing secret: {target.secret}", err=True)
    _printer(out)(line)
    if line.status is None or not 200 <= line.status < 300:
        raise typer.Exit(code=1)


def _target(url: str, signing_secret: str | None) -> Target:
    from common.config import Settings
    from hookyard.forwarding import (
        checked_forward_url,
        checked_signing_secret,
        stored_signing_secret,
    )
    from hookyard.listen import Target

    checked = checked_forward_url(url)
    if signing_secret is not None:
        return Target(checked, checked_signing_secret(signing_secret))
    secret, _saved = stored_signing_secret(Settings().data_dir / "secrets")
    return Target(checked, secret)


@contextmanager
def _command_errors(url: str | None, token: str | None) -> Iterator[tuple[str, str]]:
    """The stack's URL and admin token; misuse is exit 2, the API's refusals and no token
    exit 1, each one line."""
    from common.errors import SecretUnavailable
    from hookyard.admin_client import AdminError, AdminUnreachable, NoAdminToken, resolve_token
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
    except (AdminUnreachable, SecretUnavailable, NoAdminToken) as exc:
        raise fail(str(exc)) from None


def _printer(out: JsonOutput | None) -> Callable[[Forwarded], None]:
    """JSON lines when asked, or when stdout is not a terminal; else one text line each."""
    from rich.console import Console

    from hookyard.listen_lines import json_record, text_line

    if out is None and not sys.stdout.isatty():
        out = JsonOutput(None, None, None)
    if out is not None:
        shown = out
        return lambda line: shown.emit_line(json_record(line))
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
