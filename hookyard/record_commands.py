"""`hookyard replays`, `audit` and `accounts`: what operators did and what the ledger holds.

Read-only views over the admin API's listings (and `replays cancel`, audited like every
change), with the same conventions as `dlq`: tables for people, tab-separated when piped,
`--json [FIELDS]`/`--jq` for scripts.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hookyard import json_output as json_fields
from hookyard.json_output import JqOption, JsonOption, json_output
from hookyard.operator_cli import (
    LimitOption,
    ReasonOption,
    SinceOption,
    TokenOption,
    UntilOption,
    UrlOption,
    _admin,
    _ago,
    _console,
    _fields,
    _print_wide,
    _reason,
    _show_list,
    _truncate,
)

if TYPE_CHECKING:  # the client imports settings, which the CLI reads only once it runs
    from hookyard.admin_client import JsonObject

replays_app = typer.Typer(
    help="Replays of dead letters: list, show, cancel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(
    help="Accounts: balances, ledger entries and notification attempts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AccountArgument = Annotated[str, typer.Argument(metavar="ACCOUNT", help="The account's id.")]
ReplayArgument = Annotated[int, typer.Argument(metavar="ID", min=1, help="The replay's id.")]
NOTE_WIDTH = 60


class ReplayState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


def register(app: typer.Typer) -> None:
    app.add_typer(replays_app, name="replays")
    app.add_typer(accounts_app, name="accounts")
    app.command("audit")(audit)


@replays_app.command("list")
def replays_list(
    *,
    state: Annotated[ReplayState | None, typer.Option(help="Replay state.")] = None,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Replays, newest first: who started each, why, and how far it got."""
    out = json_output(as_json, jq, json_fields.REPLAY)
    with _admin(url, token) as client:
        chosen = state.value if state is not None else None
        items = list(client.iter_replays(state=chosen, limit=limit))

    def row(item: JsonObject) -> tuple[Any, ...]:
        state_shown = f"{item.get('state')} (dry run)" if item.get("dry_run") else item.get("state")
        return (
            item.get("id"),
            state_shown,
            item.get("done"),
            item.get("failed"),
            item.get("total"),
            item.get("actor"),
            _truncate(item.get("reason"), NOTE_WIDTH),
            _ago(item.get("created_at")),
        )

    _show_list(
        out,
        items,
        "no replays",
        (
            ("id", "num"),
            ("state", "key"),
            ("done", "num"),
            ("failed", "num"),
            ("total", "num"),
            ("actor", "key"),
            ("reason", "text"),
            ("started", "key"),
        ),
        row,
    )


@replays_app.command("show")
def replays_show(
    *,
    replay_id: ReplayArgument,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """One replay: its state, counts, who started it and why."""
    out = json_output(as_json, jq, json_fields.REPLAY)
    with _admin(url, token) as client:
        replay = client.get_replay(replay_id)
    if out:
        out.emit(replay)
        return
    _print_wide(_console(), _fields(replay, json_fields.REPLAY[1:]))


@replays_app.command("cancel")
def replays_cancel(
    *,
    replay_id: ReplayArgument,
    reason: ReasonOption,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Stop a running replay; what it had not reached stays pending. Audited."""
    out = json_output(as_json, jq, json_fields.REPLAY)
    reason = _reason(reason)
    with _admin(url, token) as client:
        replay = client.cancel_replay(replay_id, reason)
    if out:
        out.emit(replay)
        return
    done, total = replay.get("done"), replay.get("total")
    typer.echo(f"replay {replay.get('id')} {replay.get('state')}: {done} of {total} replayed")


def audit(
    *,
    action: Annotated[
        str | None,
        typer.Option(help="e.g. replay.start, discard, event.erase.", show_default=False),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Exactly this actor.", show_default=False)] = (
        None
    ),
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The audit trail, newest first: who did what to which dead letters and events, and why."""
    out = json_output(as_json, jq, json_fields.AUDIT_ENTRY)
    with _admin(url, token) as client:
        items = list(
            client.iter_audit(action=action, actor=actor, since=since, until=until, limit=limit)
        )

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            _ago(item.get("at")),
            item.get("actor"),
            item.get("action"),
            _truncate(item.get("reason"), NOTE_WIDTH),
            _compact(item.get("result")),
        )

    _show_list(
        out,
        items,
        "no audit entries match",
        (
            ("id", "num"),
            ("when", "key"),
            ("actor", "key"),
            ("action", "key"),
            ("reason", "text"),
            ("result", "text"),
        ),
        row,
    )


@accounts_app.command("list")
def accounts_list(
    *,
    prefix: Annotated[
        str | None, typer.Option(help="Only ids that start with this.", show_default=False)
    ] = None,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Accounts in id order, with their balances in minor units."""
    out = json_output(as_json, jq, json_fields.ACCOUNT)
    with _admin(url, token) as client:
        items = list(client.iter_accounts(prefix=prefix, limit=limit))

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            item.get("currency"),
            item.get("available"),
            item.get("held"),
            item.get("notify_url"),
        )

    _show_list(
        out,
        items,
        "no accounts match",
        (
            ("id", "key"),
            ("currency", "key"),
            ("available", "num"),
            ("held", "num"),
            ("notify url", "text"),
        ),
        row,
    )


@accounts_app.command("show")
def accounts_show(
    *,
    account_id: AccountArgument,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """One account: balances, where notifications go, how many wait to be delivered."""
    out = json_output(as_json, jq, json_fields.ACCOUNT_DETAIL)
    with _admin(url, token) as client:
        account = client.get_account(account_id)
    if out:
        out.emit(account)
        return
    _print_wide(_console(), _fields(account, json_fields.ACCOUNT_DETAIL))


@accounts_app.command("entries")
def accounts_entries(
    *,
    account_id: AccountArgument,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The account's ledger postings, oldest first, each with the event that caused it."""
    out = json_output(as_json, jq, json_fields.ENTRY)
    with _admin(url, token) as client:
        items = list(client.iter_entries(account_id, limit=limit))

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            item.get("balance"),
            item.get("amount"),
            item.get("currency"),
            item.get("kind"),
            f"{item.get('source')}/{item.get('event_id')}",
            _ago(item.get("created_at")),
        )

    _show_list(
        out,
        items,
        "no entries",
        (
            ("id", "num"),
            ("balance", "key"),
            ("amount", "num"),
            ("currency", "key"),
            ("kind", "key"),
            ("event", "key"),
            ("when", "key"),
        ),
        row,
    )


@accounts_app.command("notifications")
def accounts_notifications(
    *,
    account_id: AccountArgument,
    limit: LimitOption = 100,
    as_json: JsonOption = None,
    jq: JqOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delivery attempts of the account's notifications, newest first (URLs masked)."""
    out = json_output(as_json, jq, json_fields.NOTIFICATION_ATTEMPT)
    with _admin(url, token) as client:
        items = list(client.iter_notification_attempts(account_id, limit=limit))

    def row(item: JsonObject) -> tuple[Any, ...]:
        return (
            item.get("id"),
            item.get("outbox_id"),
            item.get("kind"),
            item.get("status"),
            item.get("outbox_state"),
            item.get("duration_ms"),
            _ago(item.get("attempted_at")),
            item.get("error"),
        )

    _show_list(
        out,
        items,
        "no notification attempts",
        (
            ("id", "num"),
            ("notification", "num"),
            ("kind", "key"),
            ("status", "num"),
            ("now", "key"),
            ("ms", "num"),
            ("when", "key"),
            ("error", "text"),
        ),
        row,
    )


def _compact(value: Any) -> str | None:
    if value is None:
        return None
    return _truncate(json.dumps(value, sort_keys=True, ensure_ascii=False), NOTE_WIDTH)
