"""`hookyard dlq|events|stats` in-process against the real local stack over real HTTP.

Dead letters are produced the way they happen in production: signed Stripe events for an
account that does not exist yet go through `/webhooks/stripe`, the broker and the worker,
which dead-letters them with reason "unknown account …".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import Result

from common.db import reconciliations
from common.topology import get_topology
from hookyard import admin_client, operator_cli
from hookyard.admin_client import operator_name
from hookyard.cli import app
from hookyard.stack import LocalStack
from tests.support.cli_runner import Runner
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    admin,
    free_port,
    running_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

AMOUNTS = (100, 200, 300)


@pytest.fixture
def stack(pg_server: TestServer, database: str, tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(pg_server, database, tmp_path) as running:
        yield running


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as c:
        yield c


def cli(stack: LocalStack, *args: str, token: str = ADMIN_TOKEN, **env: str) -> Result:
    """Runs `hookyard ARGS --url … --token …` in-process, stdout and stderr kept apart,
    on a 160-column "terminal" unless `COLUMNS` says otherwise."""
    return Runner().invoke(
        app, [*args, "--url", stack.url, "--token", token], env={"COLUMNS": "160", **env}
    )


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def seed(client: httpx.Client, account: str, amounts: tuple[int, ...], prefix: str) -> list[str]:
    """Payments for an account that does not exist yet: each one ends in a dead letter."""
    ids = []
    for i, amount in enumerate(amounts):
        event_id = f"{prefix}_{i}"
        body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
        response = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
        assert response.status_code == 202, response.text
        ids.append(event_id)
    return ids


def pending(stack: LocalStack, count: int) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = ok_json(
            cli(stack, "dlq", "list", "--source", "stripe", "--state", "pending", "--json")
        )
        return items if len(items) == count else None

    return wait_for(listed, timeout=60)  # type: ignore[no-any-return]


def available(client: httpx.Client, account: str) -> int:
    return int(client.get(f"/admin/accounts/{account}").json()["available"])


def test_inspect_dry_run_replay_and_replay_again(
    stack: LocalStack, client: httpx.Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_ids = seed(client, "acct_cli", AMOUNTS, "evt_cli")
    dead = pending(stack, 3)
    assert {d["event_id"] for d in dead} == set(event_ids)
    assert all("unknown account" in d["reason"] for d in dead)
    assert {d["source"] for d in dead} == {"stripe"}

    table = cli(stack, "dlq", "list", "--source", "stripe")
    assert table.exit_code == 0, table.stderr
    assert "unknown account 'acct_cli'" in table.stdout
    header, *rows = table.stdout.splitlines()  # piped: tab-separated, one row per line
    assert header.split("\t")[:3] == ["id", "state", "source"]
    assert sorted(int(row.split("\t")[0]) for row in rows) == sorted(d["id"] for d in dead)
    assert {len(row.split("\t")) for row in rows} == {len(header.split("\t"))}
    drawn = cli(stack, "dlq", "list", "--source", "stripe", TTY_COMPATIBLE="1")
    assert "\t" not in drawn.stdout  # a terminal gets the drawn table
    assert "unknown account 'acct_cli'" in drawn.stdout
    narrow = cli(stack, "dlq", "list", COLUMNS="80", TTY_COMPATIBLE="1")
    assert narrow.exit_code == 0, narrow.stderr
    for d in dead:  # what an operator copies into the next command is never cut short
        row = next(line.split() for line in narrow.stdout.splitlines() if d["event_id"] in line)
        assert row[:2] == [str(d["id"]), "pending"]
    narrowed = ok_json(cli(stack, "dlq", "list", "--error", "UNKNOWN", "--limit", "2", "--json"))
    assert len(narrowed) == 2  # --limit caps what is shown even when more match
    with monkeypatch.context() as patch:
        patch.setattr(admin_client, "MAX_PAGE", 2)  # pages of 2: the listing follows the cursor
        paged = ok_json(cli(stack, "dlq", "list", "--json"))
    assert [d["id"] for d in paged] == sorted(d["id"] for d in dead)

    shown = ok_json(cli(stack, "dlq", "show", str(dead[0]["id"]), "--json"))
    assert shown["data_json"]["data"]["object"]["metadata"]["account_id"] == "acct_cli"
    panel = cli(stack, "dlq", "show", str(dead[0]["id"]))
    assert panel.exit_code == 0, panel.stderr
    assert dead[0]["event_id"] in panel.stdout
    assert "acct_cli" in panel.stdout  # the pretty-printed payload
    assert "unknown account" in panel.stdout

    dry = cli(stack, "dlq", "replay", "--source", "stripe", "--dry-run", "--reason", "checking")
    assert dry.exit_code == 0, dry.stderr
    assert "3 dead letters would be replayed" in dry.stdout
    dry_json = cli(
        stack, "dlq", "replay", "--source", "stripe", "--dry-run",
        "--reason", "checking", "--json",
    )  # fmt: skip
    assert ok_json(dry_json) == {"dry_run": True, "total": 3}
    assert len(pending(stack, 3)) == 3  # a dry run changes nothing

    created = client.put("/admin/accounts/acct_cli", json={"currency": "usd"})
    assert created.status_code == 201
    replay = cli(
        stack, "dlq", "replay", "--source", "stripe", "--reason", "account created",
        TTY_COMPATIBLE="1",  # stderr counts as a terminal: the live progress bar is drawn
    )  # fmt: skip
    assert replay.exit_code == 0, (replay.stdout, replay.stderr)
    assert replay.stdout == "replay 1 done: 3 of 3 replayed, 0 failed\n"
    assert "3/3" in replay.stderr
    wait_for(lambda: available(client, "acct_cli") == sum(AMOUNTS), timeout=60)

    again_run = cli(
        stack, "dlq", "replay", "--filter", "source=stripe", "--reason", "account created", "--json"
    )
    assert again_run.stderr.startswith("warning: --filter is deprecated")  # still works
    again = ok_json(again_run)
    assert (again["state"], again["total"], again["done"], again["failed"]) == ("done", 0, 0, 0)
    time.sleep(0.5)  # anything the second run had published would land by now
    assert available(client, "acct_cli") == sum(AMOUNTS)
    replayed = ok_json(cli(stack, "dlq", "list", "--state", "replayed", "--json"))
    assert sorted(d["id"] for d in replayed) == sorted(d["id"] for d in dead)
    assert all(d["replay_id"] is not None for d in replayed)

    events = ok_json(cli(stack, "events", "list", "--source", "stripe", "--json"))
    assert {e["event_id"]: e["outcome"] for e in events} == dict.fromkeys(event_ids, "applied")
    event = ok_json(cli(stack, "events", "show", "stripe", event_ids[0], "--json"))
    assert event["transactions"][0]["kind"] == "payment"
    postings = event["transactions"][0]["postings"]
    assert sum(p["amount"] for p in postings) == 0
    events_table = cli(stack, "events", "list")
    assert events_table.exit_code == 0, events_table.stderr
    assert all(e in events_table.stdout for e in event_ids)
    event_panel = cli(stack, "events", "show", "stripe", event_ids[0])
    assert event_panel.exit_code == 0, event_panel.stderr
    assert "payment" in event_panel.stdout
    assert "acct_cli" in event_panel.stdout

    with engine.connect() as conn:
        actions = conn.execute(
            sa.text("SELECT actor, action, reason FROM operator_actions ORDER BY id")
        ).all()
    assert [(a.action, a.reason) for a in actions] == [
        ("replay.dry-run", "checking"),
        ("replay.dry-run", "checking"),
        ("replay.start", "account created"),
        ("replay.start", "account created"),
    ]
    assert {a.actor for a in actions} == {operator_name()}


def test_stats_then_discard_by_id_and_by_filter(stack: LocalStack, client: httpx.Client) -> None:
    seed(client, "acct_gone", (10, 20, 30), "evt_gone")
    dead = pending(stack, 3)

    before = ok_json(cli(stack, "stats", "--json"))
    assert before["dead_letters"]["by_state"] == {"pending": 3}
    assert "ledger" in before["subscriptions"]
    topology = get_topology()  # idle ones too: absent would read as "missing", not "idle"
    assert set(before["subscriptions"]) == {s.name for s in topology.subscriptions}
    assert set(before["queues"]) == {q.name for q in topology.queues}
    assert before["queues"]["statements"]["backlog"] == 0
    [top] = before["dead_letters"]["by_reason"]  # the server groups pending ones only
    assert (top["subscription"], top["count"]) == ("ledger", 3)
    assert "unknown account" in top["reason"]
    tables = cli(stack, "stats")
    assert tables.exit_code == 0, tables.stderr
    assert "ledger" in tables.stdout
    assert "unknown account 'acct_gone'" in tables.stdout
    assert "last reconciliation:" in tables.stdout
    assert stack.engine is not None
    with stack.engine.begin() as conn:
        reconciliations.record(conn, datetime.now(UTC), [{"account_id": "acct_x", "drift": 5}])
    checked = cli(stack, "stats")
    assert "last reconciliation: 1 problem(s)" in checked.stdout
    assert '{"account_id": "acct_x", "drift": 5}' in checked.stdout

    by_id = cli(stack, "dlq", "discard", str(dead[0]["id"]), "--reason", "test data", "--json")
    assert ok_json(by_id) == {"discarded": 1}
    again = cli(stack, "dlq", "discard", str(dead[0]["id"]), "--reason", "test data")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == "discarded 0 dead letters\n"
    assert again.stderr.startswith("warning: 1 of 1 id skipped")
    typo = cli(stack, "dlq", "discard", str(dead[1]["id"]), "999999", "--reason", "test data")
    assert typo.exit_code == 1
    assert typo.stderr == "error: no dead letter with id 999999; nothing was changed\n"
    assert ok_json(cli(stack, "dlq", "show", str(dead[1]["id"]), "--json"))["state"] == "pending"
    listed = ok_json(cli(stack, "dlq", "list", "--error", "unknown account", "--json"))
    assert len(listed) == 3  # the same filter flags on list and discard
    by_filter = cli(
        stack, "dlq", "discard", "--error", "unknown account", "--source", "stripe",
        "--reason", "account closed for good",
    )  # fmt: skip
    assert by_filter.exit_code == 0, by_filter.stderr
    assert by_filter.stderr == ""
    assert "discarded 2 dead letters" in by_filter.stdout
    discarded = ok_json(cli(stack, "dlq", "list", "--state", "discarded", "--json"))
    assert len(discarded) == 3
    nothing_left = cli(
        stack, "dlq", "replay", "--filter", "source=stripe", "--dry-run", "--reason", "check"
    )
    assert "0 dead letters would be replayed" in nothing_left.stdout
    after = ok_json(cli(stack, "stats", "--json"))
    assert after["dead_letters"]["by_state"] == {"discarded": 3}
    assert after["dead_letters"]["by_reason"] == []


def test_ctrl_c_cancels_the_replay_and_exits_1(
    stack: LocalStack, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(client, "acct_slow", tuple(range(1, 9)), "evt_slow")
    pending(stack, 8)

    interrupts = [KeyboardInterrupt]

    def interrupt(seconds: float) -> None:
        """The operator presses Ctrl-C during the first wait between two polls."""
        if interrupts:
            raise interrupts.pop()
        time.sleep(seconds)

    with monkeypatch.context() as patch:
        # Only the CLI's own clock is patched: the stack's threads keep the real `time`.
        patch.setattr(
            operator_cli, "time", SimpleNamespace(monotonic=time.monotonic, sleep=interrupt)
        )
        result = cli(
            stack, "dlq", "replay", "--source", "stripe", "--rate", "1", "--reason", "slowly",
        )  # fmt: skip
    assert not interrupts
    assert result.exit_code == 1
    assert " cancelled: " in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: replay ")
    assert "interrupted" in line

    replay_id = int(result.stdout.split()[1])  # "replay 1 cancelled: 1 of 8 replayed, …"
    replay = client.get(f"/admin/replays/{replay_id}").json()
    assert replay["state"] == "cancelled"
    replayed = ok_json(cli(stack, "dlq", "list", "--state", "replayed", "--json"))
    assert len(replayed) == replay["done"] < 8

    # The account still does not exist: what was replayed failed again, as new dead letters
    # linked to the old ones; what the replay never reached is pending again.
    def failed_again() -> list[dict[str, Any]] | None:
        linked = [d for d in pending(stack, 8) if d["replay_of"] is not None]
        return linked if len(linked) == len(replayed) else None

    linked = wait_for(failed_again) if replayed else []
    assert sorted(d["replay_of"] for d in linked) == sorted(d["id"] for d in replayed)


def test_a_payload_cannot_drive_the_operators_terminal(
    stack: LocalStack, client: httpx.Client
) -> None:
    # Ingest validates event ids, but the payload is the sender's and `dlq show` prints it.
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f"
    body = stripe_event(
        "evt_evil", "payment_intent.succeeded", "acct_nobody", amount_received=1,
        description=evil, **{evil: "as a key too"},
    )  # fmt: skip
    assert client.post("/webhooks/stripe", content=body, headers=signed_stripe(body)).is_success
    [dead] = pending(stack, 1)
    shown_json = ok_json(cli(stack, "dlq", "show", str(dead["id"]), "--json"))
    assert shown_json["data_json"]["data"]["object"]["description"] == evil  # data intact
    shown = cli(stack, "dlq", "show", str(dead["id"]))
    assert shown.exit_code == 0, shown.stderr
    assert "owned" in shown.stdout
    assert "as a key too" in shown.stdout
    assert not {"\x1b", "\x07", "\x9b", "\x7f"} & set(shown.stdout)
    assert "\u241b" in shown.stdout  # shown as the visible symbol for ESC instead


def test_bad_token_is_one_line_without_the_token(stack: LocalStack) -> None:
    wrong = "wrong-token-0123456789abcdef"
    for args in (("dlq", "list"), ("stats", "--json"), ("dlq", "show", "1")):
        result = cli(stack, *args, token=wrong)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("error: ")
        assert "bearer token" in result.stderr
        assert wrong not in result.stderr


def test_api_errors_and_unreachable_servers_exit_1(stack: LocalStack) -> None:
    missing = cli(stack, "dlq", "show", "999999")
    assert missing.exit_code == 1
    assert missing.stderr == "error: no dead letter 999999\n"
    unknown_event = cli(stack, "events", "show", "stripe", "evt_nope")
    assert unknown_event.exit_code == 1
    assert "no event" in unknown_event.stderr
    bad_filter_value = cli(stack, "dlq", "discard", "--source", "NOT A NAME", "--reason", "x")
    assert bad_filter_value.exit_code == 1
    assert bad_filter_value.stderr.startswith("error: filter.source")

    nowhere = Runner().invoke(
        app, ["stats", "--url", f"http://127.0.0.1:{free_port()}", "--token", ADMIN_TOKEN]
    )
    assert nowhere.exit_code == 1
    assert nowhere.stderr.startswith("error: stack not reachable at http://127.0.0.1:")
    assert ADMIN_TOKEN not in nowhere.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "replay", "--reason", "x"],  # neither ids nor a filter
        ["dlq", "replay", "1", "--filter", "source=stripe", "--reason", "x"],  # both
        ["dlq", "replay", "1", "--source", "stripe", "--reason", "x"],  # both
        ["dlq", "list", "--reason", "unknown account"],  # --reason is the audit note only
        ["dlq", "replay", "--filter", "colour=red", "--reason", "x"],  # unknown key
        ["dlq", "replay", "--filter", "source", "--reason", "x"],  # not key=value
        ["dlq", "replay", "--filter", "source=a", "--filter", "source=b", "--reason", "x"],
        ["dlq", "replay", "--filter", "source=stripe"],  # no --reason
        ["dlq", "replay", "--filter", "source=stripe", "--reason", "  "],
        ["dlq", "replay", "--filter", "since=yesterday", "--reason", "x"],
        ["dlq", "replay", "--filter", "source=stripe", "--rate", "0", "--reason", "x"],
        ["dlq", "discard", "--reason", "x"],
        ["dlq", "discard", "--filter", "state=pending", "--reason", "x"],
        ["dlq", "list", "--state", "lost"],
        ["dlq", "list", "--since", "2026-01-01T00:00:00"],  # no offset: ambiguous
        ["dlq", "list", "--limit", "0"],
        ["dlq", "show", "abc"],
        ["events", "show", "stripe"],
        ["dlq", "frobnicate"],
        ["dlq", "list", "--json", "id,nope"],  # a field the command does not print
        ["dlq", "list", "--json", "id,,state"],
        ["dlq", "replay", "1", "--reason", "x", "--json", "id,totl"],
        ["dlq", "replay", "1", "--reason", "x", "--jq", ".["],  # does not compile
        ["stats", "--json", "subscriptions,backlog"],
        ["replays", "list", "--state", "paused"],
        ["replays", "cancel", "1"],  # no --reason
        ["audit", "--since", "yesterday"],
        ["accounts", "list", "--json", "id,balance"],
    ],
)
def test_usage_errors_exit_2_before_any_request(args: list[str]) -> None:
    # An unreachable URL proves no request was needed to reject the command line.
    result = Runner().invoke(app, [*args, "--url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "not reachable" not in result.stderr
    *warnings, line = result.stderr.splitlines()  # one line, as every error, with its hint
    assert line.startswith("error: "), line
    assert line.endswith(" --help`)"), line
    assert all(w.startswith("warning: --filter is deprecated") for w in warnings), warnings


def test_json_fields_and_jq_as_gh_has_them(stack: LocalStack, client: httpx.Client) -> None:
    event_ids = seed(client, "acct_jq", (5, 6), "evt_jq")
    dead = pending(stack, 2)

    picked = ok_json(cli(stack, "dlq", "list", "--json", "state,id"))
    assert [list(item) for item in picked] == [["state", "id"]] * 2  # in the order asked
    assert sorted(item["id"] for item in picked) == sorted(d["id"] for d in dead)
    assert ok_json(cli(stack, "dlq", "show", str(dead[0]["id"]), "--json=event_id")) == {
        "event_id": dead[0]["event_id"]
    }
    shown = ok_json(
        cli(stack, "events", "show", "stripe", event_ids[0], "--json", "source,outcome")
    )
    assert shown == {"source": "stripe", "outcome": "dead_lettered"}
    bare_before_arguments = cli(stack, "events", "show", "--json", "stripe", event_ids[0])
    assert ok_json(bare_before_arguments)["event_id"] == event_ids[0]  # `stripe` is no field

    raw = cli(stack, "dlq", "list", "--jq", ".[].event_id")
    assert raw.exit_code == 0, raw.stderr
    assert sorted(raw.stdout.splitlines()) == sorted(event_ids)  # strings print raw, as jq -r
    counted = cli(stack, "dlq", "list", "--json", "id", "--jq", "map(.id) | add")
    assert counted.stdout == f"{sum(d['id'] for d in dead)}\n"
    pending_count = cli(stack, "stats", "--jq", ".dead_letters.by_state.pending")
    assert pending_count.stdout == "2\n"
    broken = cli(stack, "dlq", "list", "--jq", ".[0].id.x")  # compiles, fails on this input
    assert broken.exit_code == 1
    [line] = broken.stderr.splitlines()
    assert line.startswith("error: --jq: ")

    typo = cli(stack, "dlq", "replay", str(dead[0]["id"]), "--reason", "r", "--json", "id,totl")
    assert typo.exit_code == 2, typo.stderr
    assert "unknown field totl" in typo.stderr
    assert client.get("/admin/replays").json()["items"] == []  # refused before it started
    still = ok_json(cli(stack, "dlq", "show", str(dead[0]["id"]), "--json", "state"))
    assert still == {"state": "pending"}


def test_replays_audit_and_accounts_from_the_command_line(
    stack: LocalStack, client: httpx.Client
) -> None:
    seed(client, "acct_rec", (7, 4), "evt_rec")
    pending(stack, 2)
    assert client.put("/admin/accounts/acct_rec", json={"currency": "usd"}).status_code == 201
    replayed = cli(stack, "dlq", "replay", "--source", "stripe", "--reason", "account created")
    assert replayed.exit_code == 0, replayed.stderr

    [replay] = ok_json(cli(stack, "replays", "list", "--json"))
    assert (replay["state"], replay["total"], replay["done"]) == ("done", 2, 2)
    assert replay["reason"] == "account created"
    assert ok_json(cli(stack, "replays", "list", "--state", "running", "--json")) == []
    shown = cli(stack, "replays", "show", str(replay["id"]), "--jq", ".state")
    assert shown.stdout == "done\n"
    cancelled = cli(stack, "replays", "cancel", str(replay["id"]), "--reason", "too late")
    assert cancelled.exit_code == 0, cancelled.stderr
    assert cancelled.stdout == f"replay {replay['id']} done: 2 of 2 replayed\n"

    trail = ok_json(cli(stack, "audit", "--json", "action,reason"))
    assert trail[:2] == [  # newest first
        {"action": "replay.cancel", "reason": "too late"},
        {"action": "replay.start", "reason": "account created"},
    ]
    only = ok_json(cli(stack, "audit", "--action", "replay.cancel", "--json", "action"))
    assert only == [{"action": "replay.cancel"}]
    table = cli(stack, "audit", "--limit", "1")
    header, row = table.stdout.splitlines()
    assert header.split("\t") == ["id", "when", "actor", "action", "reason", "result"]
    assert row.split("\t")[3:5] == ["replay.cancel", "too late"]

    accounts = ok_json(cli(stack, "accounts", "list", "--prefix", "acct_rec", "--json"))
    assert [(a["id"], a["available"], a["held"]) for a in accounts] == [("acct_rec", 11, 0)]
    detail = ok_json(cli(stack, "accounts", "show", "acct_rec", "--json", "available"))
    assert detail == {"available": 11}
    amounts = ok_json(cli(stack, "accounts", "entries", "acct_rec", "--jq", "map(.amount)"))
    assert sorted(amounts) == [4, 7]  # the platform's side is the platform account's
    none = cli(stack, "accounts", "notifications", "acct_rec")
    assert none.exit_code == 0, none.stderr
    assert "no notification attempts" in none.stdout
    unknown = cli(stack, "accounts", "show", "acct_nobody")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: ")
