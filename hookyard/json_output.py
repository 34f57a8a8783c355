"""`--json [FIELDS]` and `--jq EXPR` on every command that prints JSON, as `gh` has them.

A bare `--json` prints everything; `--json id,source` keeps those fields of each object, in
that order; `--jq` runs the output through a jq program. Both are checked before a command
does anything, so a mistyped field never leaves a replay started with its output lost.

Click has no option whose value is optional, so `main` rewrites a bare `--json` to `--json=`
before parsing (`bare_json_flags`). The word after `--json` is its field list only when it
could be one: a comma-separated list, or a single known field name. Anything else (an event
id, a source) is the command's argument, as it was before fields existed.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from hookyard.terminal_text import visible

JsonOption = Annotated[
    str | None,
    typer.Option(
        "--json",
        metavar="[FIELDS]",
        help="Print JSON for scripts; --json id,state keeps only those fields.",
        show_default=False,
    ),
]
JqOption = Annotated[
    str | None,
    typer.Option(
        "--jq",
        metavar="EXPR",
        help="Filter the JSON through a jq expression (implies --json).",
        show_default=False,
    ),
]

_FIELD = r"[A-Za-z_][A-Za-z0-9_]*"
_FIELD_LIST = re.compile(rf"{_FIELD}(,{_FIELD})*")

# The fields of what each command prints, as the API's schemas name them (a unit test holds
# them to common/openapi.yaml) or as the command builds them.
DEAD_LETTER = (
    "id", "state", "origin", "source", "event_id", "event_type", "subscription", "message_id",
    "delivery_count", "failure_count", "reason", "error_class", "attributes", "first_failed_at",
    "last_failed_at", "replay_id", "replay_of",
)  # fmt: skip
DEAD_LETTER_DETAIL = (*DEAD_LETTER, "data", "data_json")
REPLAY = (
    "id", "state", "dry_run", "total", "done", "failed", "max_per_second", "actor", "reason",
    "created_at", "finished_at",
)  # fmt: skip
REPLAY_STARTED = ("replay_id", "total", "state", "dry_run")
DISCARD = ("discarded",)
EVENT = (
    "id", "source", "event_id", "event_type", "message_id", "outcome", "received_at",
    "recorded_at", "content_type", "body_bytes", "body_sha256", "headers", "handlers",
    "payload_erased_at",
)  # fmt: skip
EVENT_DETAIL = (*EVENT, "payload", "payload_base64", "erase_reason", "transactions")
ERASE = ("erased", "dead_letters_discarded")
RESEND = ("published",)
STATS = ("subscriptions", "queues", "dead_letters", "last_reconciliation")
FORWARDED = (
    "time", "source", "event_type", "event_id", "webhook_id", "outcome", "status", "error",
)  # fmt: skip
SENT = ("status", "body")
FIXTURE = ("source", "type")
FIXTURE_BODY = ("event_id", "event_type", "content_type", "body")
CRON_JOB = ("job", "schedule", "time_zone", "next")
AUDIT_ENTRY = ("id", "at", "actor", "action", "reason", "params", "result")
ACCOUNT = ("id", "currency", "notify_url", "available", "held")
ACCOUNT_DETAIL = (*ACCOUNT, "pending_notifications")
ENTRY = (
    "id", "transaction_id", "balance", "amount", "currency", "kind", "source", "event_id",
    "created_at",
)  # fmt: skip
NOTIFICATION_ATTEMPT = (
    "id", "outbox_id", "kind", "outbox_state", "attempted_at", "url", "status", "error",
    "duration_ms",
)  # fmt: skip

KNOWN_FIELDS = frozenset(
    DEAD_LETTER_DETAIL + REPLAY + REPLAY_STARTED + DISCARD + EVENT_DETAIL + ERASE + RESEND
    + STATS + FORWARDED + SENT + FIXTURE + FIXTURE_BODY + CRON_JOB + AUDIT_ENTRY
    + ACCOUNT_DETAIL + ENTRY + NOTIFICATION_ATTEMPT
)  # fmt: skip


def bare_json_flags(argv: Sequence[str]) -> list[str]:
    """`--json` without a field list becomes `--json=` (every field); see the module doc."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        if arg == "--json":
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is None or not _is_field_list(following):
                out.append("--json=")
                continue
        out.append(arg)
    return out


def _is_field_list(word: str) -> bool:
    return _FIELD_LIST.fullmatch(word) is not None and ("," in word or word in KNOWN_FIELDS)


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """How to print: which fields (None: all of them) and through which jq program."""

    fields: tuple[str, ...] | None
    program: Any | None
    expression: str | None

    def emit(self, value: Any) -> None:
        """One JSON document, indented as before fields existed."""
        self._print(value, indent=2)

    def emit_line(self, value: Any) -> None:
        """One JSON line (commands that stream)."""
        self._print(value, indent=None)

    def _print(self, value: Any, *, indent: int | None) -> None:
        shaped = self.select(value)
        if self.program is None:
            typer.echo(json.dumps(shaped, indent=indent))
            return
        for result in self.run(shaped):
            typer.echo(_jq_text(result), color=True)  # color: echo would strip escapes

    def select(self, value: Any) -> Any:
        if self.fields is None:
            return value
        if isinstance(value, list):
            return [self._pick(item) for item in value]
        return self._pick(value)

    def _pick(self, item: Any) -> Any:
        if not isinstance(item, dict) or self.fields is None:
            return item
        return {name: item.get(name) for name in self.fields}

    def run(self, value: Any) -> list[Any]:
        assert self.program is not None
        try:
            with _ctrl_c_ends_the_process():
                results: list[Any] = self.program.input_value(value).all()
        except ValueError as exc:
            typer.echo(f"error: --jq: {_one_line(str(exc))}", err=True)
            raise typer.Exit(code=1) from None
        return results


@contextmanager
def _ctrl_c_ends_the_process() -> Iterator[None]:
    """libjq runs in C and never hands control back to Python while a program loops
    (`last(repeat(1))`), so Python's Ctrl-C handling would never run: while it runs, SIGINT
    ends the process as it ends `jq` itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def json_output(
    fields: str | None, expression: str | None, available: Iterable[str]
) -> JsonOutput | None:
    """None when neither option was given; a usage error (exit 2) for an unknown field or a
    jq expression that does not compile, before the command has done anything."""
    if fields is None and expression is None:
        return None
    chosen = _fields(fields, tuple(available))
    program = None
    if expression is not None:
        import jq

        try:
            program = jq.compile(expression)
        except ValueError as exc:
            raise typer.BadParameter(_jq_error(str(exc)), param_hint="--jq") from None
    return JsonOutput(chosen, program, expression)


def _fields(given: str | None, available: tuple[str, ...]) -> tuple[str, ...] | None:
    if not given:
        return None
    names = [name.strip() for name in given.split(",")]
    unknown = [name for name in names if name not in available]
    if unknown or not all(names):
        shown = ", ".join(visible(name) for name in unknown) or "an empty name"
        raise typer.BadParameter(
            f"unknown field {shown}; available: {', '.join(sorted(available))}",
            param_hint="--json",
        )
    return tuple(dict.fromkeys(names))


def _jq_text(result: Any) -> str:
    """Strings print raw, as `gh --jq` and `jq -r` print them, with control characters shown
    as symbols on a terminal (a payload must not drive the operator's terminal); anything
    else prints as compact JSON."""
    if isinstance(result, str):
        return visible(result, keep="\n\t") if sys.stdout.isatty() else result
    return json.dumps(result)


def _jq_error(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return _one_line(lines[0] if lines else message)


def _one_line(text: str) -> str:
    return " ".join(visible(text).split())
