"""The event search's pure parts: path parsing, containment documents, handler outcomes."""

from __future__ import annotations

import json

import pytest

from common.db.event_search import (
    DeadLetterRecord,
    EventQuery,
    FailureRecord,
    InboxRecord,
    PathMatch,
    Records,
    outcomes,
    summary,
    where,
)
from common.topology import get_topology


def test_a_value_that_spells_a_json_literal_matches_both_forms() -> None:
    docs = [json.loads(d) for d in PathMatch.parse("a.b=2500").documents()]
    assert docs == [{"a": {"b": "2500"}}, {"a": {"b": 2500}}]
    assert [json.loads(d) for d in PathMatch.parse("a=null").documents()] == [
        {"a": "null"}, {"a": None}
    ]  # fmt: skip
    # Not JSON literals: only the string.
    for text in ("007", "1e", "acct_1", "True", "1e99999", ""):
        assert [json.loads(d) for d in PathMatch.parse(f"a={text}").documents()] == [{"a": text}]


def test_keys_and_values_are_json_encoded_never_spliced() -> None:
    [doc] = PathMatch.parse('we"ird.k}ey=va"l{').documents()
    assert json.loads(doc) == {'we"ird': {"k}ey": 'va"l{'}}


@pytest.mark.parametrize(
    "text", ["noequals", "=v", "a..b=1", ".a=1", "a.=1", ".".join(["a"] * 17) + "=1",
             "a=" + "x" * 1025, "b" * 129 + "=1"],
)  # fmt: skip
def test_malformed_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="path"):
        PathMatch.parse(text)


def test_values_are_bound_not_interpolated() -> None:
    clause, params = where(
        EventQuery(source="x' OR 1=1 --", text="'; DROP TABLE event_log", handler="ledger",
                   outcome="pending"),
        get_topology().handlers,
    )  # fmt: skip
    assert "DROP" not in clause
    assert "OR 1=1" not in clause
    assert "x' OR 1=1 --" in params.values()


def test_each_handler_reports_from_its_own_records() -> None:
    handlers = get_topology().handlers
    records = Records(
        inbox=[InboxRecord("github-builds", "applied", {"rows": 0}, None)],
        failures=[FailureRecord("github-builds", 2, "TransientError: db")],
    )
    [github] = outcomes("github", "push", handlers, records)
    assert (github.outcome, github.attempts, github.effects) == ("applied", 3, {"rows": 0})
    assert outcomes("github", "ping", handlers, Records()) == []
    assert summary([]) == "recorded"
    dead = Records(
        dead_letters=[DeadLetterRecord("ledger", 9, "pending", "unknown account", 1)],
        failures=[FailureRecord("ledger", 1, "x")],
    )
    [ledger] = outcomes("stripe", "payment_intent.succeeded", handlers, dead)
    assert (ledger.outcome, ledger.dead_letter_id, ledger.last_error) == (
        "dead_lettered", 9, "unknown account")  # fmt: skip
    [waiting] = outcomes("stripe", "charge.refunded", handlers, Records())
    assert waiting.outcome == "pending"
    assert summary([github, ledger, waiting]) == "dead_lettered"
