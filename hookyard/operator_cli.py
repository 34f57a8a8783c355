"""`hookyard dlq …`, `hookyard events …` and `hookyard stats`: the operator's commands.

Every command talks to the admin API over HTTP (never to the database), so the same
commands work against the laptop stack and a deployment, and every change is authenticated
and audited by the server. People get rich tables; `--json` prints plain JSON for scripts.
Exit codes follow the rest of the CLI: 0 ok, 1 error (one line on stderr), 2 usage.

Everything shown here may come from a webhook sender, so text is printed as rich `Text`
(no markup parsing) with control characters made visible: a payload must not be able to
drive the operator's terminal.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.measure import Measurement
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from common.config import Settings
from hookyard import json_output as json_fields
from hookyard.json_output import JqOption, JsonOption, JsonOutput, json_output
from hookyard.stack_url import (
    DEPRECATED_URL_ENV,
    URL_ENV,
    InvalidStackUrl,
    checked_stack_url,
    default_stack_url,
    is_loopback,
)
from hookyard.terminal_text import visible

if TYPE_CHECKING:
    from hookyard.admin_client import AdminClient, DeadLetterFilter, EventSearch, JsonObject

POLL_INTERVAL_S = 0.2  # ~5 polls a second: smooth progress, negligible load
STALL_TIMEOUT_S = 120.0  # a running replay that moves nothing for this long is reported
CANCEL_REASON = "cancelled from the CLI"
CANCEL_ATTEMPTS = 4
REASON_WIDTH = 60
FILTER_KEYS = ("source", "type", "subscription", "reason", "since", "until")
TIME_FILTER_KEYS = frozenset({"since", "until"})
RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

dlq_app = typer.Typer(
    help="Inspect, replay and discard dead letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(
    help="The event log: search, show, erase and resend events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Mounts the operator commands on the main `hookyard` app, so cli.py stays small."""
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(events_app, name="events")
    app.command("stats")(stats)


class DeadLetterState(StrEnum):
    PENDING = "pending"
    REPLAYING = "replaying"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


def _instant(value: str | None) -> str | None:
    """RFC 3339 (with an offset) or a look-back such as `30m`, `2h`, `7d`; sent as UTC.

    A time without an offset is refused rather than guessed: "since 09:00" on a laptop in
    Berlin and a server in UTC would select different dead letters.
    """
    if value is None:
        return None
    relative = RELATIVE.match(value.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        try:
            moment = datetime.now(UTC) - timedelta(**{UNITS[unit]: amount})
        except OverflowError:
            raise typer.BadParameter(f"{value!r} reaches back before year 1") from None
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is neither RFC 3339 (2026-01-31T09:00:00Z) nor a look-back like 2h"
            ) from None
        if moment.tzinfo is None:
            raise typer.BadParameter(f"{value!r} needs a UTC offset, e.g. Z or +01:00")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=URL_ENV,
        help="The stack's base URL (default: where `hookyard dev` listens,"
        " http://HOOKYARD_HOST:HOOKYARD_PORT).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Admin bearer token (default: HOOKYARD_ADMIN_TOKEN, else the local stack's).",
        show_default=False,
    ),
]
SourceOption = Annotated[str | None, typer.Option("--source", help="Webhook source, e.g. stripe.")]
TypeOption = Annotated[str | None, typer.Option("--type", help="Event type.")]
SinceOption = Annotated[
    str | None,
    typer.Option(callback=_instant, help="Failed at or after: RFC 3339 or a look-back like 2h."),
]
UntilOption = Annotated[
    str | None, typer.Option(callback=_instant, help="Failed before: RFC 3339 or a look-back.")
]
LimitOption = Annotated[
    int, typer.Option(min=1, max=100_000, help="Show at most this many (follows pages).")
]
IdsArgument = Annotated[
    list[int] | None,
    typer.Argument(metavar="IDS", help="Dead-letter ids.", show_default=False, min=1),
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        metavar="KEY=VALUE",
        help="Deprecated: use --source, --type, --subscription, --error, --since, --until.",
        show_default=False,
        hidden=True,
    ),
]
SubscriptionOption = Annotated[
    str | None, typer.Option("--subscription", help="Subscription name.", show_default=False)
]
ErrorOption = Annotated[
    str | None,
    typer.Option("--error", help="Substring of the failure reason.", show_default=False),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why, for the audit trail.", show_default=False)
]


# -- dead letters ---------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    *,
    source: SourceOption = None,
    event_type: TypeOption = None,
    subscription: SubscriptionOption = None,
    error: ErrorOption = None,
    state: Annotated[DeadLetterState | None, typer.Option(help="Dead-letter state.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List dead letters: what failed, where, how often and why."""
    out = json_output(as_json, jq, json_fields.DEAD_LETTER)
    where = _filter_flags(source, event_type, subscription, error, since, until)
    with _admin(url, token) as client:
        items = list(
            client.iter_dead_letters(
                where, state=state.value if state is not None else None, limit=limit
            )
        )

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            item.get("state"),
            item.get("source"),
            item.get("event_id"),
            item.get("event_type"),
            item.get("subscription"),
            item.get("delivery_count"),
            item.get("failure_count"),
            _truncate(item.get("reason"), REASON_WIDTH),
            _ago(item.get("last_failed_at")),
        )

    columns = (
        ("id", "num"),
        ("state", "key"),
        ("source", "key"),
        ("event id", "key"),
        ("type", "text"),
        ("subscription", "key"),
        ("deliveries", "num"),
        ("failures", "num"),
        ("reason", "text"),
        ("last seen", "key"),
    )
    _show_list(out, items, "no dead letters match", columns, row)


@dlq_app.command("show")
def dlq_show(
    *,
    dead_letter_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="Dead-letter id.")],
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one dead letter: where it failed, its attributes and its payload."""
    out = json_output(as_json, jq, json_fields.DEAD_LETTER_DETAIL)
    with _admin(url, token) as client:
        item = client.get_dead_letter(dead_letter_id)
    if out:
        out.emit(item)
        return
    fields = _fields(
        item,
        (
            "state",
            "origin",
            "source",
            "event_id",
            "event_type",
            "subscription",
            "message_id",
            "delivery_count",
            "failure_count",
            "error_class",
            "reason",
            "first_failed_at",
            "last_failed_at",
            "replay_id",
            "replay_of",
        ),
    )
    attributes = item.get("attributes") or {}
    parts: list[RenderableType] = [fields, Rule("attributes", style="dim")]
    if attributes:
        parts.append(_fields(attributes, tuple(sorted(attributes))))
    else:
        parts.append(Text("none", style="dim"))
    parts.append(Rule("data", style="dim"))
    if item.get("data_json") is not None:
        parts.append(JSON.from_data(_scrub(item["data_json"]), indent=2))
    else:
        parts.append(Text(_printable(str(item.get("data") or ""))))
    title = Text(f"dead letter {item.get('id', dead_letter_id)}", style="bold")
    _print_wide(_console(), Panel(Group(*parts), title=title, title_align="left"))


@dlq_app.command("replay")
def dlq_replay(
    *,
    reason: ReasonOption,
    ids: IdsArgument = None,
    source: SourceOption = None,
    event_type: TypeOption = None,
    subscription: SubscriptionOption = None,
    error: ErrorOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    filters: FilterOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be replayed.")
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option(min=1, max=1000, help="Replays per second (server default 100)."),
    ] = None,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Publish dead letters again, rate-limited and audited, and watch them go through.

    Ctrl-C cancels the replay on the server and exits 1.
    """
    out = json_output(as_json, jq, json_fields.REPLAY_STARTED if dry_run else json_fields.REPLAY)
    flags = _filter_flags(source, event_type, subscription, error, since, until)
    selected_ids, where = _selection(ids, filters, flags)
    reason = _reason(reason)
    with _admin(url, token) as client:
        started = client.replay(
            ids=selected_ids, where=where, reason=reason, dry_run=dry_run, max_per_second=rate
        )
        _warn_skipped(selected_ids, int(started.get("total", 0)))
        if dry_run:
            if out:
                out.emit(started)
            else:
                total = int(started.get("total", 0))
                typer.echo(f"dry run: {total} dead letter{_s(total)} would be replayed")
            return
        replay_id = int(started["replay_id"])
        total = int(started.get("total", 0))
        interrupted = False
        try:
            final = _watch(client, replay_id, total, show_progress=out is None)
        except KeyboardInterrupt:
            # An interrupted watcher must not leave running a replay nobody is looking at.
            interrupted = True
            final = _cancel(client, replay_id)
    _replay_outcome(final, out=out, interrupted=interrupted)


@dlq_app.command("discard")
def dlq_discard(
    *,
    reason: ReasonOption,
    ids: IdsArgument = None,
    source: SourceOption = None,
    event_type: TypeOption = None,
    subscription: SubscriptionOption = None,
    error: ErrorOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    filters: FilterOption = None,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Mark dead letters as discarded: kept for the record, never replayed."""
    out = json_output(as_json, jq, json_fields.DISCARD)
    flags = _filter_flags(source, event_type, subscription, error, since, until)
    selected_ids, where = _selection(ids, filters, flags)
    reason = _reason(reason)
    with _admin(url, token) as client:
        result = client.discard(ids=selected_ids, where=where, reason=reason)
    _warn_skipped(selected_ids, int(result.get("discarded", 0)))
    if out:
        out.emit(result)
        return
    count = int(result.get("discarded", 0))
    typer.echo(f"discarded {count} dead letter{_s(count)}")


def _warn_skipped(ids: Sequence[int] | None, selected: int) -> None:
    """The server refuses unknown ids but skips ones that are not pending without a word;
    an operator who named ids explicitly should hear that some were not touched."""
    if ids and selected < len(ids):
        skipped = len(ids) - selected
        typer.echo(
            f"warning: {skipped} of {len(ids)} id{_s(len(ids))} skipped"
            " (not pending: already replayed, replaying or discarded)",
            err=True,
        )


def _watch(client: AdminClient, replay_id: int, total: int, *, show_progress: bool) -> JsonObject:
    """Polls the replay until it leaves `running`; a stall is an error, not a hang."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn(f"replay {replay_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        # Redrawn frames only make sense on a terminal; a log file gets the summary line.
        disable=not show_progress or not console.is_terminal,
    )
    with progress:
        task = progress.add_task("replay", total=total or None, failed=0)
        seen = -1
        last_change = time.monotonic()
        while True:
            replay = client.get_replay(replay_id)
            done, failed = int(replay.get("done", 0)), int(replay.get("failed", 0))
            progress.update(
                task,
                completed=done + failed,
                total=int(replay.get("total", total)) or None,
                failed=failed,
            )
            if replay.get("state") != "running":
                return replay
            if done + failed != seen:
                seen, last_change = done + failed, time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT_S:
                raise _fail(
                    f"replay {replay_id} made no progress for {STALL_TIMEOUT_S:.0f}s;"
                    f" it is still running on the server (GET /admin/replays/{replay_id})"
                )
            time.sleep(POLL_INTERVAL_S)


def _cancel(client: AdminClient, replay_id: int) -> JsonObject:
    """Cancels after Ctrl-C, retrying server errors a few times.

    Cancelling is idempotent (a finished replay just comes back as it is), and a replay left
    running because of one 5xx is the worst outcome a Ctrl-C could have.
    """
    from hookyard.admin_client import AdminError, AdminUnreachable

    problem = ""
    for attempt in range(1, CANCEL_ATTEMPTS + 1):
        try:
            return client.cancel_replay(replay_id, CANCEL_REASON)
        except AdminError as exc:
            if exc.status < 500:
                raise
            problem = exc.detail
        except AdminUnreachable as exc:
            problem = str(exc)
        if attempt < CANCEL_ATTEMPTS:
            time.sleep(0.5 * attempt)
    raise _fail(
        f"could not cancel replay {replay_id} ({problem}); it may still be running:"
        f" POST /admin/replays/{replay_id}/cancel"
    )


def _replay_outcome(replay: JsonObject, *, out: JsonOutput | None, interrupted: bool) -> None:
    done, failed = int(replay.get("done", 0)), int(replay.get("failed", 0))
    total, state = int(replay.get("total", 0)), str(replay.get("state"))
    rid = replay.get("id")
    if out:
        out.emit(replay)
    else:
        typer.echo(f"replay {rid} {state}: {done} of {total} replayed, {failed} failed")
    if interrupted:
        raise _fail(f"replay {rid} interrupted: {state} after {done} of {total}")
    if state != "done":
        raise _fail(f"replay {rid} ended {state} after {done} of {total}")
    if failed:
        raise _fail(f"replay {rid}: {failed} of {total} dead letter{_s(total)} failed again")


def _selection(
    ids: Sequence[int] | None, filters: Sequence[str] | None, flags: DeadLetterFilter
) -> tuple[list[int] | None, DeadLetterFilter | None]:
    """IDS or filters (the flags `dlq list` takes): exactly one, so a typo cannot widen
    the selection. `--filter key=value` still works, with a warning."""
    if ids and (filters or flags):
        raise typer.BadParameter("give dead-letter IDS or filters, not both", param_hint="IDS")
    if ids:
        return list(dict.fromkeys(ids)), None
    if flags and filters:
        raise typer.BadParameter("give the filter flags or --filter, not both", param_hint="IDS")
    if flags:
        return None, flags
    if not filters:
        raise typer.BadParameter(
            "give dead-letter IDS or at least one filter"
            " (--source, --type, --subscription, --error, --since, --until)",
            param_hint="IDS",
        )
    typer.echo(
        "warning: --filter is deprecated; use --source, --type, --subscription, --error,"
        " --since, --until",
        err=True,
    )
    where: dict[str, str] = {}
    for raw in filters:
        key, sep, value = raw.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise typer.BadParameter(f"{raw!r} is not KEY=VALUE", param_hint="--filter")
        if key not in FILTER_KEYS:
            raise typer.BadParameter(
                f"unknown key {key!r}; use one of {', '.join(FILTER_KEYS)}", param_hint="--filter"
            )
        if key in where:
            raise typer.BadParameter(f"{key!r} given twice", param_hint="--filter")
        if key in TIME_FILTER_KEYS:
            try:
                value = _instant(value) or value
            except typer.BadParameter as exc:
                raise typer.BadParameter(exc.message, param_hint="--filter") from None
        where[key] = value
    return None, _compact_filter(**where)


def _filter_flags(*values: str | None) -> DeadLetterFilter:
    """The filter flags `dlq list`, `replay` and `discard` share, in their order, as the
    API's filter (`--error` is its `reason`)."""
    keys = ("source", "type", "subscription", "reason", "since", "until")
    return _compact_filter(**dict(zip(keys, values, strict=True)))


def _compact_filter(**values: str | None) -> DeadLetterFilter:
    where: DeadLetterFilter = {}
    for key, value in values.items():
        if value is not None:
            where[key] = value  # type: ignore[literal-required]
    return where


def _reason(reason: str) -> str:
    if not reason.strip():
        raise typer.BadParameter(
            "must say why (it goes into the audit trail)", param_hint="--reason"
        )
    return reason.strip()


# -- events and stats -----------------------------------------------------------------------


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    PENDING = "pending"


@events_app.command("list")
def events_list(
    *,
    source: SourceOption = None,
    event_type: TypeOption = None,
    since: Annotated[
        str | None,
        typer.Option(callback=_instant, help="Received at or after: RFC 3339 or a look-back."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(callback=_instant, help="Received before: RFC 3339 or a look-back."),
    ] = None,
    handler: Annotated[str | None, typer.Option(help="Only events this handler takes.")] = None,
    outcome: Annotated[
        Outcome | None, typer.Option(help="A handler's outcome (--handler's, else any).")
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            metavar="A.B.C=VALUE",
            help="The payload has VALUE at this dotted path (repeatable; all must hold).",
            show_default=False,
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Words anywhere in the payload.")
    ] = None,
    limit: LimitOption = 100,
    desc: Annotated[bool, typer.Option("--desc", help="Newest first.")] = False,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Search the event log: every verified event and what each handler made of it."""
    search: EventSearch = {}
    for key, value in (("since", since), ("until", until), ("handler", handler), ("q", query)):
        if value is not None:
            search[key] = value  # type: ignore[literal-required]
    if outcome is not None:
        search["outcome"] = outcome.value
    if path:
        for raw in path:
            if "=" not in raw:
                raise typer.BadParameter(f"{raw!r} is not A.B.C=VALUE", param_hint="--path")
        search["path"] = list(path)
    if desc:
        search["order"] = "desc"
    out = json_output(as_json, jq, json_fields.EVENT)
    with _admin(url, token) as client:
        items = list(
            client.iter_events(source=source, event_type=event_type, limit=limit, search=search)
        )

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            item.get("source"),
            item.get("event_id"),
            item.get("event_type"),
            _handler_outcomes(item),
            item.get("body_bytes"),
            _ago(item.get("received_at")),
        )

    columns = (
        ("id", "num"),
        ("source", "key"),
        ("event id", "key"),
        ("type", "text"),
        ("handlers", "key"),
        ("bytes", "num"),
        ("received", "key"),
    )
    _show_list(out, items, "no events match", columns, row)


def _handler_outcomes(event: JsonObject) -> str:
    """`ledger:applied github-builds:dead_lettered`, or `recorded` when no handler takes it."""
    handlers = event.get("handlers") or []
    if not handlers:
        return str(event.get("outcome") or "recorded")
    return " ".join(f"{h.get('handler')}:{h.get('outcome')}" for h in handlers)


EventSourceArgument = Annotated[str, typer.Argument(help="Webhook source, e.g. stripe.")]
EventIdArgument = Annotated[str, typer.Argument(help="The sender's event id.")]


@events_app.command("show")
def events_show(
    *,
    source: EventSourceArgument,
    event_id: EventIdArgument,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one event: its payload, headers, every handler's outcome and the ledger rows."""
    out = json_output(as_json, jq, json_fields.EVENT_DETAIL)
    with _admin(url, token) as client:
        event = client.get_event(source, event_id)
    if out:
        out.emit(event)
        return
    console = _console()
    fields = _fields(
        event,
        ("id", "source", "event_id", "event_type", "outcome", "received_at", "content_type",
         "body_bytes", "body_sha256", "message_id", "payload_erased_at", "erase_reason"),
    )  # fmt: skip
    parts: list[RenderableType] = [fields, Rule("payload", style="dim")]
    parts.append(_payload(event, pretty=console.is_terminal))
    parts.append(Rule("headers", style="dim"))
    headers = event.get("headers") or {}
    parts.append(_fields(headers, sorted(headers)) if headers else Text("none", style="dim"))
    parts.append(Rule("handlers", style="dim"))
    handlers = event.get("handlers") or []
    if handlers:
        table = _table(
            ("handler", "key"),
            ("outcome", "key"),
            ("attempts", "num"),
            ("last error", "text"),
            ("dead letter", "num"),
            ("effects", "text"),
        )
        for h in handlers:
            effects = h.get("effects")
            table.add_row(
                *_cells(
                    h.get("handler"), h.get("outcome"), h.get("attempts"), h.get("last_error"),
                    h.get("dead_letter_id"),
                    json.dumps(effects, sort_keys=True) if effects is not None else None,
                )
            )  # fmt: skip
        parts.append(table)
    else:
        parts.append(Text("no handler takes this event", style="dim"))
    parts += [Rule("transactions", style="dim"), _transactions(event)]
    title = Text(f"event {_printable(source)}/{_printable(event_id)}", style="bold")
    _print_wide(console, Panel(Group(*parts), title=title, title_align="left"))


def _payload(event: JsonObject, *, pretty: bool) -> RenderableType:
    """JSON highlighted for a terminal, plain text in a pipe; base64 for other bodies."""
    if event.get("payload") is not None:
        document = _scrub(event["payload"])
        if pretty:
            return JSON.from_data(document, ensure_ascii=False)
        return Text(json.dumps(document, indent=2, ensure_ascii=False))
    if event.get("payload_base64"):
        return Text(f"(not JSON, base64) {event['payload_base64']}")
    if event.get("payload_erased_at"):
        return Text(f"erased ({_printable(str(event.get('erase_reason')))})", style="dim")
    return Text("none", style="dim")


def _transactions(event: JsonObject) -> RenderableType:
    transactions = event.get("transactions") or []
    if not transactions:
        return Text("none", style="dim")
    table = _table(
        ("id", "num"),
        ("kind", "key"),
        ("account", "key"),
        ("currency", "key"),
        ("postings", "text"),
    )
    for tx in transactions:
        postings = ", ".join(
            f"{_posting_account(p)} {int(p.get('amount', 0)):+d}" for p in tx.get("postings") or []
        )
        table.add_row(
            *_cells(
                tx.get("id"), tx.get("kind"), tx.get("account_id"), tx.get("currency"), postings
            )
        )
    return table


@events_app.command("erase")
def events_erase(
    *,
    source: EventSourceArgument,
    event_id: EventIdArgument,
    reason: ReasonOption,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Erase an event's payload and headers (and its pending dead letters' copies), keeping
    the proof that it was processed. Audited."""
    out = json_output(as_json, jq, json_fields.ERASE)
    with _admin(url, token) as client:
        result = client.erase_event(source, event_id, _reason(reason))
    if out:
        out.emit(result)
        return
    key = f"{_printable(source)}/{_printable(event_id)}"
    if not result.get("erased"):
        typer.echo(f"{key} was already erased")
        return
    discarded = result.get("dead_letters_discarded") or []
    extra = f"; discarded dead letter{_s(len(discarded))} {', '.join(map(str, discarded))}"
    typer.echo(f"erased the payload of {key}{extra if discarded else ''}")


@events_app.command("resend")
def events_resend(
    *,
    source: EventSourceArgument,
    event_id: EventIdArgument,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", help="Why, for the audit trail (not with --to).", show_default=False
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            help="Instead, forward the stored event to your app, signed as `listen` signs.",
        ),
    ] = None,
    handler: Annotated[
        list[str] | None,
        typer.Option(
            "--handler",
            metavar="NAME",
            help="Only this handler (repeatable; default: every handler that takes it).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run a stored event through its handlers again (a handler that applied it already
    acknowledges a duplicate; audited), or with --to forward it to your app."""
    if to is not None:
        if handler:
            raise typer.BadParameter("goes with the handlers, not --to", param_hint="--handler")
        from hookyard.listen_commands import forward

        forward(
            source=source, event_id=event_id, to=to, url=url, token=token, as_json=as_json, jq=jq
        )
        return
    if reason is None:
        raise typer.BadParameter(
            "must say why (it goes into the audit trail)", param_hint="--reason"
        )
    out = json_output(as_json, jq, json_fields.RESEND)
    with _admin(url, token) as client:
        result = client.resend_event(source, event_id, _reason(reason), handler)
    if out:
        out.emit(result)
        return
    for sent in result.get("published") or []:
        typer.echo(
            f"resent {_printable(source)}/{_printable(event_id)} to "
            f"{_printable(str(sent.get('handler')))} (message {sent.get('message_id')})"
        )


def stats(
    *,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Backlogs of every subscription and queue, and dead letters by state and reason."""
    out = json_output(as_json, jq, json_fields.STATS)
    with _admin(url, token) as client:
        body = client.stats()
    if out:
        out.emit(body)
        return
    console = _console()
    for title, key in (("subscriptions", "subscriptions"), ("queues", "queues")):
        table = _table(
            (title[:-1], "key"),
            ("backlog", "num"),
            ("oldest unacked", "num"),
            ("in flight", "num"),
            title=title,
        )
        for name, row in sorted((body.get(key) or {}).items()):
            table.add_row(
                *_cells(
                    name,
                    row.get("backlog"),
                    _age(row.get("oldest_unacked_age_s")),
                    row.get("in_flight"),
                )
            )
        _print_wide(console, table)
    dead = body.get("dead_letters") or {}
    by_state = _table(("state", "key"), ("count", "num"), ("failures", "num"), title="dead letters")
    failures = dead.get("failures_by_state") or {}
    for state_name, count in sorted((dead.get("by_state") or {}).items()):
        by_state.add_row(*_cells(state_name, count, failures.get(state_name)))
    _print_wide(console, by_state)
    by_reason = _table(
        ("subscription", "key"),
        ("reason", "text"),
        ("count", "num"),
        ("failures", "num"),
        title="pending dead letters by reason",
    )
    for row in dead.get("by_reason") or []:
        by_reason.add_row(
            *_cells(
                row.get("subscription"),
                _truncate(row.get("reason"), REASON_WIDTH),
                row.get("count"),
                row.get("failures"),
            )
        )
    _print_wide(console, by_reason)
    console.print(_reconciliation_line(body.get("last_reconciliation")))


def _reconciliation_line(last: JsonObject | None) -> Text:
    """The hourly ledger check: when it last ran and what it found."""
    if not last:
        return Text("last reconciliation: never run")
    found = "ok" if last.get("ok") else f"{last.get('problem_count')} problem(s)"
    line = f"last reconciliation: {found}, checked {last.get('checked_at')}"
    if not last.get("ok"):
        problems = "; ".join(
            _printable(json.dumps(p, sort_keys=True)) for p in last.get("problems") or []
        )
        line += f" ({problems})" if problems else ""
    return Text(line)


# -- plumbing -------------------------------------------------------------------------------


@contextmanager
def _admin(url: str | None, token: str | None) -> Iterator[AdminClient]:
    """A client for the command's lifetime; API and connection errors become `error: …`."""
    from hookyard.admin_client import (
        AdminClient,
        AdminError,
        AdminUnreachable,
        NoAdminToken,
        resolve_token,
    )

    base_url = stack_url(url)
    try:
        secret = resolve_token(token)
        client = AdminClient(base_url, secret)
    except NoAdminToken as exc:
        raise _fail(str(exc)) from None
    _warn_if_cleartext(base_url)
    with client:
        try:
            yield client
        except AdminError as exc:
            raise _fail(_redact(exc.detail, secret)) from None
        except AdminUnreachable as exc:
            raise _fail(_redact(str(exc), secret)) from None


def _redact(message: str, secret: str) -> str:
    """Belt and braces: no server message should echo the token, but if one ever did it
    would end up in a terminal scrollback or a CI log. (Tiny test tokens are left alone
    rather than starring out every matching letter.)"""
    return message.replace(secret, "***") if len(secret) >= 8 else message


def stack_url(url: str | None) -> str:
    """`--url`/`HOOKYARD_URL`, else the deprecated `HOOKYARD_ADMIN_URL`, else the local stack.

    A malformed URL is a usage error (exit 2), caught before any request is attempted.
    """
    if url is None and (legacy := os.environ.get(DEPRECATED_URL_ENV, "").strip()):
        typer.echo(f"warning: {DEPRECATED_URL_ENV} is deprecated; set {URL_ENV}", err=True)
        url = legacy
    try:
        return checked_stack_url(url) if url else default_stack_url(Settings())
    except InvalidStackUrl as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--url / {URL_ENV}") from None


def _warn_if_cleartext(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme == "http" and not is_loopback(base_url):
        typer.echo(
            f"warning: sending the admin token over plain HTTP to {parts.hostname}", err=True
        )


def _fail(message: str) -> typer.Exit:
    """Same contract as `hookyard.cli.fail`: one line on stderr, exit 1."""
    line = " ".join(_printable(message).split())
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(code=1)


def _console() -> Console:
    return Console(highlight=False)


def _posting_account(posting: JsonObject) -> Any:
    """The API contract names it `balance`; the server sends the full `ledger_account`."""
    return posting.get("balance") or posting.get("ledger_account")


def _print_wide(console: Console, renderable: RenderableType) -> None:
    """Prints at the terminal's width, or wider when the content cannot fit: a terminal
    wrapping a long line loses nothing, while a squeezed table drops columns and characters.
    Piped, a table is tab-separated lines instead, one row per line, for `cut` and `awk`."""
    if isinstance(renderable, Table) and not console.is_terminal:
        typer.echo(_tsv(renderable))
        return
    unbounded = console.options.update_width(10_000)
    needed = Measurement.get(console, unbounded, renderable).minimum
    if needed > console.width:  # `print(width=…)` can only narrow, so widen a copy
        console = Console(file=console.file, highlight=False, width=needed)
    console.print(renderable)


def _show_list(
    out: JsonOutput | None,
    items: list[JsonObject],
    empty: str,
    columns: tuple[tuple[str, str], ...],
    row: Callable[[JsonObject], tuple[Any, ...]],
) -> None:
    """JSON when asked; else a table of `columns`, one `row(item)` per item."""
    if out:
        out.emit(items)
        return
    if not items:
        _console().print(Text(empty, style="dim"))
        return
    table = _table(*columns)
    for item in items:
        table.add_row(*_cells(*row(item)))
    _print_wide(_console(), table)


def _tsv(table: Table) -> str:
    """Header then rows, tab-separated; a tab or line break inside a cell becomes a space.
    A titled table (stats prints several) is preceded by `# title`."""

    def cell(value: Any) -> str:
        return " ".join(str(value).replace("\t", " ").splitlines())

    lines = [f"# {table.title}"] if table.title else []
    lines.append("\t".join(cell(column.header) for column in table.columns))
    columns = [list(column.cells) for column in table.columns]
    lines += ["\t".join(cell(row) for row in values) for values in zip(*columns, strict=True)]
    return "\n".join(lines)


def _table(*columns: tuple[str, str], title: str | None = None) -> Table:
    """Columns are "num", "key" (ids and names: kept on one line while there is room) or
    "text" (wraps, takes the remaining width). Nothing ends in "…": an operator copies ids
    from this table into the next command, so no character may go missing."""
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", highlight=False, pad_edge=False
    )
    for name, kind in columns:
        if kind == "num":
            table.add_column(name, justify="right", no_wrap=True)
        elif kind == "key":
            table.add_column(name, no_wrap=True, overflow="fold")
        else:
            table.add_column(name, overflow="fold", ratio=1)
    return table


def _cells(*values: Any) -> list[Text]:
    return [Text("-" if v is None else _printable(str(v))) for v in values]


def _fields(values: JsonObject, keys: Sequence[str]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key in keys:
        value = values.get(key)
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        grid.add_row(*_cells(key.replace("_", " "), shown))
    return grid


def _printable(text: str) -> str:
    """Control characters (ESC, C1, DEL, …) shown as visible symbols; newline and tab kept."""
    return visible(text, keep="\n\t")


def _scrub(value: Any) -> Any:
    """`_printable` applied to every string in parsed JSON, keys included."""
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {_printable(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _truncate(value: Any, width: int) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _ago(value: Any) -> str | None:
    """How long ago, which is what an operator scanning a list wants; exact instants are in
    `show` and `--json`."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return "just now" if seconds < 1 else f"{_age(seconds)} ago"


def _age(seconds: Any) -> str | None:
    if seconds is None:
        return None
    total = int(float(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
