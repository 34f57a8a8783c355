"""The `hookyard` command. Tables for people, `--json` for scripts; exit 0 ok, 1 error, 2 usage."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.exceptions import UsageError  # typer vendors click: its errors are these
from typer.core import TyperGroup

from common.config import Settings
from hookyard import json_output as json_fields
from hookyard.json_output import JqOption, JsonOption, JsonOutput, bare_json_flags, json_output
from hookyard.listen_commands import register as register_listen_commands
from hookyard.operator_cli import UrlOption, stack_url
from hookyard.operator_cli import register as register_operator_commands
from hookyard.record_commands import register as register_record_commands


class _Commands(TyperGroup):
    """Reads `--json` without a field list as every field, wherever the command is invoked
    from (the console script or a test's runner), since click has no optional-value option;
    and prints a usage error as one line, as every other error prints, not as a box."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_json_flags(args))

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_errors_on_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_on_one_line():
            return super().invoke(ctx)


@contextmanager
def _usage_errors_on_one_line() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        message = " ".join(exc.format_message().split())
        if message:  # empty when a group without its command already printed its help
            where = exc.ctx.command_path if exc.ctx is not None else "hookyard"
            typer.echo(f"error: {message} (see `{where} --help`)", err=True)
        raise typer.Exit(code=exc.exit_code) from None


app = typer.Typer(
    cls=_Commands,
    name="hookyard",
    help="Webhooks and scheduled jobs on Google Cloud, and the local stack to run them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
register_operator_commands(app)
register_listen_commands(app)
register_record_commands(app)

if TYPE_CHECKING:
    from common.topology import Source


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def usage(message: str) -> typer.Exit:
    """A usage error as one line, where typer's own would print a box: exit 2."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"hookyard {version('hookyard')}")
        raise typer.Exit()


@app.callback()
def check_settings(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Every command reads HOOKYARD_* settings; a malformed one is named in one line here
    rather than surfacing later as a pydantic traceback."""
    from pydantic import ValidationError

    try:
        Settings()
    except ValidationError as exc:
        raise fail(settings_problem(exc)) from None


def settings_problem(exc: Any) -> str:
    """`HOOKYARD_PORT: Input should be a valid integer`: the variable, never its value
    (a database URL carries a password)."""
    return "; ".join(
        f"HOOKYARD_{str(error['loc'][0]).upper() if error['loc'] else '?'}: {error['msg']}"
        for error in exc.errors()
    )


@app.command()
def dev(
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port to serve on (default 8080 or HOOKYARD_PORT)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="Run the local Cloud Scheduler.")
    ] = True,
    single_process: Annotated[
        bool,
        typer.Option(
            "--single-process",
            help="Serve the four targets inside this process instead of one gunicorn each.",
        ),
    ] = False,
) -> None:
    """Run the local stack: embedded PostgreSQL, the emulators, and the four targets as
    their own processes behind one front door."""
    from common.errors import AlreadyRunning, ConfigError
    from common.logging import configure_logging
    from hookyard.stack import LocalStack

    overrides: dict[str, Any] = {}
    if port is not None:
        overrides["port"] = port
    if host is not None:
        overrides["host"] = host
    if not scheduler:
        overrides["scheduler_enabled"] = False
    overrides["dev_processes"] = not single_process
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = LocalStack(settings)
    try:
        stack.start()
    except AlreadyRunning as exc:
        pid = exc.pid or "unknown"
        raise fail(f"hookyard is already running on {settings.data_dir} (pid {pid})") from None
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        if "admin-token" in stack.generated_secrets:
            # Where, never what: a terminal's output ends up in logs and CI transcripts.
            path = stack.secrets_dir / "admin-token"
            typer.echo(f"admin token generated: {path} (the CLI reads it; curl: $(cat {path}))",
                       err=True)  # fmt: skip
        # The line to copy into a shell whose google-cloud-pubsub clients publish here.
        typer.echo(f"export PUBSUB_EMULATOR_HOST={stack.pubsub_emulator_host}", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()


@app.command()
def migrate() -> None:
    """Apply database migrations to HOOKYARD_DATABASE_URL."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from common.db import migrate as migrations
    from common.db.engine import get_engine
    from common.errors import ConfigError

    try:
        engine = get_engine()
        migrations.upgrade(engine)
        revision = migrations.current_revision(engine)
    except ConfigError as exc:
        raise fail(
            f"{exc}: export it as postgresql+pg8000://USER:PASSWORD@HOST/DB"
            " (`make run` migrates its own embedded database)"
        ) from None
    except ArgumentError:
        raise fail(
            "HOOKYARD_DATABASE_URL is not a database URL;"
            " expected postgresql+pg8000://USER:PASSWORD@HOST/DB"
        ) from None
    except DBAPIError as exc:
        raise fail(f"cannot use the database: {_database_reason(exc)}") from None
    typer.echo(f"database at revision {revision}")


def _database_reason(exc: Any) -> str:
    """pg8000 puts the server's message under `M`; the URL (and its password) stays out."""
    original = getattr(exc, "orig", None)
    detail = original.args[0] if original is not None and original.args else original
    if isinstance(detail, dict):
        detail = detail.get("M", "")
    return " ".join(str(detail or type(exc).__name__).split())


@app.command()
def send(
    source: Annotated[str, typer.Argument(help="Webhook source, e.g. stripe or github.")],
    file: Annotated[str, typer.Argument(help="Payload file, or - for standard input.")],
    url: UrlOption = None,
    event_type: Annotated[
        str | None,
        typer.Option(help="For senders that put the type in a header (GitHub, Shopify)."),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Delivery id for senders that send one (default: random).")
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, max=10_000, help="Send this many times.")] = 1,
    timestamp: Annotated[
        int | None, typer.Option(help="Unix time to sign with (default: now).")
    ] = None,
    content_type: Annotated[
        str | None, typer.Option(help="Media type when the source takes several (default: first).")
    ] = None,
    as_json: JsonOption = None,
    jq: JqOption = None,
) -> None:
    """Sign a payload exactly as SOURCE's sender would and POST it; print each response."""
    from common.topology import get_topology

    out = json_output(as_json, jq, json_fields.SENT)
    spec = get_topology().source(source)
    if spec is None:
        raise fail(f"unknown source {source!r}")
    base = _webhook_base(url, spec)
    body = sys.stdin.buffer.read() if file == "-" else _read(Path(file))
    signed = Signed(body, content_type, event_id, event_type)
    _sign_and_post(spec, base, signed, repeat=repeat, timestamp=timestamp, out=out)


@app.command()
def trigger(
    source: Annotated[
        str | None, typer.Argument(help="Webhook source; alone, lists its fixtures.")
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Argument(metavar="TYPE", help="Fixture, e.g. payment_intent.succeeded or push."),
    ] = None,
    url: UrlOption = None,
    account: Annotated[
        str | None, typer.Option(help="Stripe: the ledger account (metadata.account_id).")
    ] = None,
    amount: Annotated[
        str | None, typer.Option(help="Stripe: the amount in minor units (default 2000).")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Stripe: ISO code (default usd).")] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="PATH=VALUE",
            help="Write VALUE (JSON, else text) at a dotted PATH of the body; repeatable.",
        ),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Pin the event id (trigger twice for a duplicate).")
    ] = None,
    list_fixtures: Annotated[bool, typer.Option("--list", help="List every fixture.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--print", "--dry-run", help="Print the body; send nothing.")
    ] = False,
    as_json: JsonOption = None,
    jq: JqOption = None,
) -> None:
    """Sign and send a realistic SOURCE TYPE event built from a shipped fixture, with fresh
    ids and timestamps, exactly as the sender would; print the response."""
    from common.errors import UsageError
    from common.topology import get_topology
    from hookyard import trigger as fixtures

    if list_fixtures or source is None or event_type is None:
        if source is None and not list_fixtures:
            raise usage("give SOURCE and TYPE, or --list to see the fixtures")
        _list_fixtures(source, json_output(as_json, jq, json_fields.FIXTURE))
        return
    shape = json_fields.FIXTURE_BODY if dry_run else json_fields.SENT
    out = json_output(as_json, jq, shape)
    try:
        fixture = fixtures.load(source, event_type)
        fill = fixtures.Fill(
            account=None if account is None else fixtures.parse_account(account),
            amount=None if amount is None else fixtures.parse_amount(amount),
            currency=None if currency is None else fixtures.parse_currency(currency),
        )
        sets = [fixtures.parse_assignment(raw) for raw in assignments or []]
        spec = get_topology().source(source)
        if spec is None:
            raise fail(f"unknown source {source!r}")
        built = fixtures.build(fixture, spec, fill=fill, assignments=sets, pinned_id=event_id)
    except UsageError as exc:
        raise usage(str(exc)) from None
    if dry_run:
        if out:
            text = built.body.decode("utf-8", "replace")
            shown = {"event_id": built.event_id, "event_type": built.event_type}
            out.emit_line({**shown, "content_type": built.media_type, "body": text})
        else:
            sys.stdout.buffer.write(built.body)
            sys.stdout.flush()
        return
    base = _webhook_base(url, spec)
    signed = Signed(
        built.body, built.media_type, built.delivery_id, built.type_header, built.headers
    )
    _sign_and_post(spec, base, signed, repeat=1, timestamp=None, out=out)


def _list_fixtures(source: str | None, out: JsonOutput | None) -> None:
    from hookyard import trigger as fixtures

    found = fixtures.catalogue()
    if source is not None and source not in found:
        raise usage(f"no fixtures for source {source!r} (there are: {', '.join(found)})")
    for name, entries in found.items():
        if source in (None, name):
            for fixture in entries:
                if out:
                    out.emit_line({"source": name, "type": fixture})
                else:
                    typer.echo(f"{name:<10} {fixture}")


@dataclass(frozen=True, slots=True)
class Signed:
    """A body and what its sender says about it besides the signature."""

    body: bytes
    media_type: str | None
    event_id: str | None
    event_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    """What else the sender sends (shop domain, hook id, user agent): never signed over."""


def _webhook_base(url: str | None, spec: Source) -> str:
    base = stack_url(url)
    if base.endswith(f"/webhooks/{spec.name}"):
        raise typer.BadParameter(
            f"give the stack's base URL, without /webhooks/{spec.name}", param_hint="--url"
        )
    return base


def _sign_and_post(
    spec: Source,
    base: str,
    signed: Signed,
    *,
    repeat: int,
    timestamp: int | None,
    out: JsonOutput | None,
) -> None:
    """The one way `send` and `trigger` deliver: signed as SOURCE's sender signs, one line
    (or JSON line) per response, exit 1 when any was not a success."""
    import httpx

    from common.secrets import get_secret_store
    from hookyard.sender import sender_request

    values = get_secret_store().values(spec.secret)
    if not values:
        raise fail(f"secret {spec.secret} is not configured (run `make run` once, or export it)")
    target = f"{base}/webhooks/{spec.name}"
    failures = 0
    with httpx.Client(timeout=30) as client:
        for _ in range(repeat):
            post_url, headers = sender_request(
                spec,
                signed.body,
                values[0],
                now=timestamp if timestamp is not None else int(time.time()),
                url=target,
                event_id=signed.event_id,
                event_type=signed.event_type,
                media_type=signed.media_type,
            )
            response = _post(client, base, post_url, signed.body, {**signed.headers, **headers})
            failures += not response.is_success
            if out:
                out.emit_line({"status": response.status_code, "body": _body(response)})
            else:
                typer.echo(f"{response.status_code} {response.text.strip()}")
    if failures:
        raise typer.Exit(code=1)


cron_app = typer.Typer(help="Scheduled jobs: what runs when, and running one by hand.")
app.add_typer(cron_app, name="cron")


@cron_app.command("list")
def cron_list(
    count: Annotated[int, typer.Option(min=1, max=20, help="Next runs to show per job.")] = 3,
    as_json: JsonOption = None,
    jq: JqOption = None,
) -> None:
    """Each job's schedule, time zone and next run times (UTC)."""
    out = json_output(as_json, jq, json_fields.CRON_JOB)
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from common.topology import get_topology
    from hookyard.scheduler import upcoming

    topology = get_topology()
    ticks = upcoming(topology, datetime.now(UTC), count)
    nexts = {
        job.name: [t.at.isoformat() for t in ticks if t.job == job.name] for job in topology.jobs
    }
    if out:
        rows = [
            {"job": j.name, "schedule": j.schedule, "time_zone": j.time_zone, "next": nexts[j.name]}
            for j in topology.jobs
        ]
        out.emit_line(rows)
        return
    table = Table("job", "schedule", "time zone", "next runs (UTC)")
    for job in topology.jobs:
        table.add_row(job.name, job.schedule, job.time_zone, "\n".join(nexts[job.name]))
    Console().print(table)


@cron_app.command("run")
def cron_run(
    job: Annotated[str, typer.Argument(help="Job name, as in topology.yaml.")],
    at: Annotated[
        str | None, typer.Option(help="Schedule time, RFC 3339 (default: now, to the minute).")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Trigger JOB as Cloud Scheduler would; a second run for the same time is a no-op."""
    from datetime import UTC, datetime

    import httpx

    from common.errors import PublishError
    from common.service_identity import LocalTokenFile
    from common.topology import get_topology
    from functions.cron import parse_schedule_time
    from hookyard.scheduler import scheduler_headers

    base = stack_url(url)
    if get_topology().job(job) is None:
        raise fail(f"unknown job {job!r}")
    try:
        when = parse_schedule_time(at, datetime.now(UTC).timestamp())
    except Exception as exc:
        raise typer.BadParameter("--at must be RFC 3339 with a UTC offset") from exc
    headers = scheduler_headers(job, when)
    token_error = None
    try:
        # The local scheduler's identity, from the key the running stack keeps on disk.
        headers["Authorization"] = f"Bearer {LocalTokenFile(Settings(), 'cron', stack_url=base)()}"
    except PublishError as exc:
        token_error = str(exc)
    with httpx.Client(timeout=30) as client:
        response = _post(client, base, f"{base}/cron/{job}", b"", headers)
    if token_error is not None and response.status_code == 401:
        raise fail(token_error)
    typer.echo(f"{response.status_code} {response.text.strip()}")
    if not response.is_success:
        raise typer.Exit(code=1)


def _post(client: Any, base: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
    """POSTs, turning "nothing answered" into the one line every command prints for it."""
    import httpx

    from hookyard.stack_url import unreachable_message

    try:
        return client.post(url, content=body, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        raise fail(unreachable_message(base)) from None
    except httpx.HTTPError as exc:
        raise fail(f"no answer from {base}: {type(exc).__name__}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from exc


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def main() -> None:
    app()
