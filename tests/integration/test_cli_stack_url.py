"""Every `hookyard` command names the stack the same way: `--url` (a base URL), else
`HOOKYARD_URL`, else `http://HOOKYARD_HOST:HOOKYARD_PORT`; and says so in one line when
nothing answers there. In-process against the real local stack over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import Result

from hookyard.cli import app
from hookyard.stack import LocalStack
from tests.support.cli_runner import Runner
from tests.support.postgres import TestServer
from tests.support.stack import admin, free_port, running_stack, stripe_event, wait_for

# Each command that talks HTTP, with arguments that would make it do so.
HTTP_COMMANDS = [
    ["send", "stripe", "-"],
    ["dlq", "list"],
    ["dlq", "show", "1"],
    ["dlq", "replay", "1", "--reason", "r"],
    ["dlq", "discard", "1", "--reason", "r"],
    ["events", "list"],
    ["events", "show", "stripe", "evt_1"],
    ["stats"],
    ["cron", "run", "retention"],
]


@pytest.fixture
def stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(pg_server, database, tmp_path) as running:
        yield running


def hookyard(*args: str, stdin: bytes = b"{}", **env: str) -> Result:
    """No HOOKYARD_URL/HOST/PORT leaks in from the test's environment unless given."""
    base = {"HOOKYARD_URL": None, "HOOKYARD_ADMIN_URL": None, "HOOKYARD_HOST": None}
    return Runner().invoke(app, list(args), input=stdin, env={**base, "HOOKYARD_PORT": None, **env})


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def test_hookyard_url_reaches_the_stack_for_every_command(
    stack: LocalStack, tmp_path: Path
) -> None:
    env = {"HOOKYARD_URL": stack.url + "/"}  # a trailing slash is harmless
    orphan = stripe_event("evt_url_orphan", "payment_intent.succeeded", "acct_nobody")
    sent = ok(hookyard("send", "stripe", "-", "--json", stdin=orphan, **env))
    assert json.loads(sent)["status"] == 202

    def dead_letters() -> list[dict[str, object]]:
        return list(json.loads(ok(hookyard("dlq", "list", "--json", **env))))

    dead = wait_for(dead_letters, timeout=60)
    dead_id = str(dead[0]["id"])
    assert json.loads(ok(hookyard("dlq", "show", dead_id, "--json", **env)))["event_id"] == (
        "evt_url_orphan"
    )
    dry = ok(hookyard("dlq", "replay", dead_id, "--dry-run", "--reason", "r", "--json", **env))
    assert json.loads(dry)["total"] == 1
    assert json.loads(ok(hookyard("events", "list", "--json", **env))) is not None
    assert "subscriptions" in json.loads(ok(hookyard("stats", "--json", **env)))
    signed = {**env, "HOOKYARD_DATA_DIR": str(stack.settings.data_dir)}
    assert ok(hookyard("cron", "run", "retention", **signed)).startswith(("200 ", "202 "))
    discarded = ok(hookyard("dlq", "discard", dead_id, "--reason", "r", "--json", **env))
    assert json.loads(discarded) == {"discarded": 1}
    missing = hookyard("events", "show", "stripe", "evt_none", **env)
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no event")  # the stack answered, with a 404


def test_hookyard_port_alone_is_enough(stack: LocalStack) -> None:
    """What `HOOKYARD_PORT=18300 make run` needs from the other terminal."""
    port = str(urlsplit(stack.url).port)
    body = stripe_event("evt_port", "payment_intent.succeeded", "acct_port")
    sent = ok(hookyard("send", "stripe", "-", "--json", stdin=body, HOOKYARD_PORT=port))
    assert json.loads(sent)["body"] == {
        "status": "accepted", "source": "stripe", "event_id": "evt_port",
    }  # fmt: skip
    assert "queues" in json.loads(ok(hookyard("stats", "--json", HOOKYARD_PORT=port)))
    # cron run signs as the scheduler, with the key under the stack's data directory.
    data_dir = str(stack.settings.data_dir)
    ran = hookyard("cron", "run", "retention", HOOKYARD_PORT=port, HOOKYARD_DATA_DIR=data_dir)
    assert ok(ran).startswith("20")


def test_url_flag_is_the_base_url_for_send(stack: LocalStack) -> None:
    body = stripe_event("evt_flag", "payment_intent.succeeded", "acct_flag")
    sent = ok(hookyard("send", "stripe", "-", "--url", stack.url, stdin=body))
    assert sent == '202 {"status":"accepted","source":"stripe","event_id":"evt_flag"}\n'
    endpoint = hookyard("send", "stripe", "-", "--url", f"{stack.url}/webhooks/stripe")
    assert endpoint.exit_code == 2
    assert "base URL" in endpoint.stderr


def test_deprecated_admin_url_still_works(stack: LocalStack) -> None:
    with admin(httpx.Client(base_url=stack.url, timeout=10)) as client:
        assert client.get("/admin/stats").status_code == 200
    result = hookyard("stats", "--json", HOOKYARD_ADMIN_URL=stack.url)
    assert "subscriptions" in json.loads(ok(result))
    assert "HOOKYARD_ADMIN_URL is deprecated" in result.stderr


@pytest.mark.parametrize("args", HTTP_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_unreachable_stack_is_one_line_naming_the_url(args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for result in (hookyard(*args, "--url", url), hookyard(*args, HOOKYARD_URL=url)):
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert result.stderr == f"error: stack not reachable at {url} — is `make run` running?\n"
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unreachable_default_names_hookyard_port() -> None:
    port = str(free_port())
    result = hookyard("stats", HOOKYARD_PORT=port)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: stack not reachable at http://127.0.0.1:{port} — is `make run` running?\n"
    )


@pytest.mark.parametrize("url", ["localhost:8080", "ftp://127.0.0.1", "http://", "/admin"])
@pytest.mark.parametrize("args", [["send", "stripe", "-"], ["stats"], ["cron", "run", "reconcile"]])
def test_malformed_url_is_a_usage_error(args: list[str], url: str) -> None:
    result = hookyard(*args, "--url", url)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "is not a base URL" in result.stderr


def test_a_plain_command_finds_the_stack_that_another_terminal_started_on_another_port(
    stack: LocalStack,
) -> None:
    """`HOOKYARD_PORT=18300 make run` in one terminal, `hookyard stats` in another: the
    running stack records its URL in the data directory and the CLI reads it there."""
    env = {"HOOKYARD_DATA_DIR": str(stack.settings.data_dir)}
    assert urlsplit(stack.url).port != 8080
    assert "subscriptions" in json.loads(ok(hookyard("stats", "--json", **env)))
    stack.stop()
    gone = hookyard("stats", **env)
    assert gone.exit_code == 1
    assert "http://127.0.0.1:8080" in gone.stderr  # the record left with the stack
