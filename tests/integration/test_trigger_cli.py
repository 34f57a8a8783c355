"""`hookyard trigger` against the real local stack over real sockets: the stack verifies every
signature, so a 202 proves the fixture was signed as its sender signs; a Stripe trigger is
applied by the ledger. Misuse is one line and exit 2, in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import Result

from hookyard import trigger as fixtures
from hookyard.cli import app
from hookyard.stack import LocalStack
from tests.support.cli_runner import Runner
from tests.support.postgres import TestServer
from tests.support.stack import admin, module_stack, wait_for

EVERY_FIXTURE = [
    pytest.param(source, name, id=f"{source} {name}")
    for source, names in fixtures.catalogue().items()
    for name in names
]


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("trigger")) as running:
        yield running


def hookyard(*args: str) -> Result:
    return Runner().invoke(app, list(args), env={"HOOKYARD_URL": None})


def sent(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    [line] = result.stdout.splitlines()
    answer: dict[str, object] = json.loads(line)
    return answer


def test_a_stripe_payment_trigger_credits_the_account(stack: LocalStack) -> None:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        created = client.put("/admin/accounts/acct_trigger", json={"currency": "usd"})
        assert created.status_code in {200, 201}, created.text
        args = ["trigger", "stripe", "payment_intent.succeeded", "--account", "acct_trigger",
                "--amount", "2500", "--url", stack.url, "--json"]  # fmt: skip
        first = sent(hookyard(*args))
        assert first["status"] == 202

        def available() -> object:
            return client.get("/admin/accounts/acct_trigger").json()["available"]

        wait_for(lambda: available() == 2500, timeout=120)
        # A second trigger is a second payment (fresh ids), not a duplicate of the first.
        second = sent(hookyard(*args))
        assert second["status"] == 202
        assert isinstance(first["body"], dict)
        assert isinstance(second["body"], dict)
        assert first["body"]["event_id"] != second["body"]["event_id"]
        wait_for(lambda: available() == 5000, timeout=120)


def test_a_pinned_event_id_is_sent_as_given(stack: LocalStack) -> None:
    for _ in range(2):
        answer = sent(hookyard("trigger", "github", "push", "--event-id", "delivery-pinned",
                               "--url", stack.url, "--json"))  # fmt: skip
        assert answer == {"status": 202, "body": {
            "status": "accepted", "source": "github", "event_id": "delivery-pinned",
        }}  # fmt: skip


@pytest.mark.parametrize(("source", "name"), EVERY_FIXTURE)
def test_every_fixture_is_signed_as_its_sender_signs(
    stack: LocalStack, source: str, name: str
) -> None:
    result = hookyard("trigger", source, name, "--url", stack.url)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("202 "), result.stdout
    if source != "twilio":  # Twilio is answered with TwiML
        assert json.loads(result.stdout.removeprefix("202 "))["source"] == source


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """As a user runs it: a process of its own, outside the repository, no stack at all."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "hookyard", "trigger", *args],
        env={**clean, "HOOKYARD_DATA_DIR": str(cwd / ".hookyard")},
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_print_builds_the_body_from_any_directory_without_a_stack(tmp_path: Path) -> None:
    result = run("stripe", "charge.refunded", "--account", "acct_9", "--amount", "300",
                 "--set", "data.object.metadata.order=42", "--print", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["type"] == "charge.refunded"
    assert body["data"]["object"]["amount_refunded"] == 300
    assert body["data"]["object"]["metadata"] == {"account_id": "acct_9", "order": 42}
    listed = run("--list", "--json", cwd=tmp_path)
    assert {"source": "shopify", "type": "orders/create"} in [
        json.loads(line) for line in listed.stdout.splitlines()
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["paypal", "payment"], "no fixtures for source 'paypal' (there are: github, "),
        (["stripe", "payment"], "no stripe fixture 'payment' (there are: charge.dispute"),
        (["--list", "paypal"], "no fixtures for source 'paypal'"),
        ([], "give SOURCE and TYPE"),
        (["stripe", "payout.paid", "--set", "data.objet.amount=1"], "data.objet does not exist"),
        (["stripe", "payout.paid", "--set", "amount"], "PATH=VALUE"),
        (["stripe", "payout.paid", "--set", "id=null"], "missing event id"),
        (["stripe", "payout.paid", "--set", 'id="\\u0000"'], "contains a NUL character"),
        (["twilio", "call_status", "--set", "CallStatus=[1]"], "holds text"),
        (["stripe", "payout.paid", "--amount", "-1"], "--amount must be a whole number"),
        (["stripe", "payout.paid", "--amount", "9223372036854775808"], "--amount must be"),
        (["stripe", "payout.paid", "--amount", "twelve"], "--amount must be"),
        (["stripe", "payout.paid", "--currency", "us"], "--currency must be"),
        (["stripe", "payout.paid", "--account", ""], "--account must be"),
        (["github", "push", "--amount", "5"], "github push has no amount"),
        (["github", "push", "--event-id", "a\tb"], "control characters"),
    ],
)
def test_misuse_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = run(*args, "--print", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert message in line


def test_a_triggered_shopify_order_reserves_stock_as_a_real_one_would(stack: LocalStack) -> None:
    """Shopify always names the shop; the example handler needs it, so trigger sends it."""
    result = sent(hookyard("trigger", "shopify", "orders/create", "--url", stack.url, "--json"))
    assert result["status"] == 202
    body = result["body"]
    assert isinstance(body, dict)
    engine = stack.engine
    assert engine is not None

    def reserved() -> object:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT count(*) FROM stock_reservations WHERE event_id = :id"),
                {"id": body["event_id"]},
            ).scalar()

    wait_for(reserved, timeout=120)
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:
        shown = client.get(f"/admin/events/shopify/{body['event_id']}").json()
    assert shown["headers"]["x-shopify-shop-domain"] == "hookyard-dev.myshopify.com"
    assert shown["headers"]["user-agent"] == "Shopify-Captain-Hook"


@pytest.mark.parametrize("source", ["github", "shopify", "slack", "standard", "stripe", "twilio"])
def test_sender_headers_are_filled_and_never_a_signature(source: str) -> None:
    from common.topology import NEVER_KEPT_HEADERS, get_topology

    spec = get_topology().source(source)
    assert spec is not None
    name = next(iter(fixtures.catalogue()[source]))
    built = fixtures.build(fixtures.load(source, name), spec)
    assert built.headers["User-Agent"]
    assert not any("{{" in value for value in built.headers.values())
    assert not {h.lower() for h in built.headers} & NEVER_KEPT_HEADERS
