"""`--json [FIELDS]` and `--jq`: what the command line means, and fields the API really sends."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from common.openapi import _base
from hookyard import json_output as fields
from hookyard.json_output import bare_json_flags, json_output


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dlq", "list", "--json"], ["dlq", "list", "--json="]),
        (["dlq", "list", "--json", "--limit", "3"], ["dlq", "list", "--json=", "--limit", "3"]),
        (["dlq", "list", "--json", "id,state"], ["dlq", "list", "--json", "id,state"]),
        (["dlq", "list", "--json", "state"], ["dlq", "list", "--json", "state"]),  # a known field
        (["dlq", "list", "--json=id"], ["dlq", "list", "--json=id"]),
        # an argument after a bare --json stays the command's argument
        (
            ["events", "show", "--json", "stripe", "evt_1"],
            ["events", "show", "--json=", "stripe", "evt_1"],
        ),
        (["dlq", "show", "--json", "12"], ["dlq", "show", "--json=", "12"]),
        (["dlq", "list", "--json", "id,"], ["dlq", "list", "--json=", "id,"]),
        (["send", "stripe", "-", "--", "--json"], ["send", "stripe", "-", "--", "--json"]),
    ],
)  # fmt: skip
def test_bare_json_means_every_field(argv: list[str], expected: list[str]) -> None:
    assert bare_json_flags(argv) == expected


def test_neither_option_means_no_json() -> None:
    assert json_output(None, None, fields.DEAD_LETTER) is None


def test_fields_are_picked_in_the_order_asked_and_missing_ones_are_null() -> None:
    out = json_output("state,id,replay_id", None, fields.DEAD_LETTER)
    assert out is not None
    rows: list[Any] = [{"id": 1, "state": "pending", "reason": "r"}, {"id": 2}]
    assert out.select(rows) == [
        {"state": "pending", "id": 1, "replay_id": None},
        {"state": None, "id": 2, "replay_id": None},
    ]
    assert out.select({"id": 3, "state": "done"}) == {"state": "done", "id": 3, "replay_id": None}
    assert json_output("id,id", None, fields.DEAD_LETTER).fields == ("id",)  # type: ignore[union-attr]
    every = json_output("", None, fields.DEAD_LETTER)
    assert every is not None
    assert every.select(rows) == rows


@pytest.mark.parametrize("given", ["id,nope", "nope", "id,,state", " , "])
def test_an_unknown_or_empty_field_is_a_usage_error_naming_what_exists(given: str) -> None:
    with pytest.raises(typer.BadParameter) as raised:
        json_output(given, None, fields.REPLAY)
    message = raised.value.format_message()
    assert "available: actor, created_at, done" in message


def test_a_field_name_is_shown_safely() -> None:
    with pytest.raises(typer.BadParameter) as raised:
        json_output("id,\x1b[31mred", None, fields.REPLAY)
    assert "\x1b" not in raised.value.format_message()


def test_jq_is_compiled_before_anything_runs_and_filters_the_picked_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.BadParameter, match="syntax error"):
        json_output(None, ".[", fields.REPLAY)
    out = json_output("id", "map(.id)", fields.REPLAY)
    assert out is not None
    out.emit([{"id": 1, "state": "done"}, {"id": 2}])
    assert capsys.readouterr().out == "[1, 2]\n"
    raw = json_output(None, ".[] | .reason", fields.REPLAY)
    assert raw is not None
    raw.emit([{"reason": "a\tb"}, {"reason": "\x1b[2J"}])
    assert capsys.readouterr().out == "a\tb\n\x1b[2J\n"  # piped: exact, as jq -r


def test_jq_strings_cannot_drive_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    raw = json_output(None, ".reason", fields.REPLAY)
    assert raw is not None
    raw.emit({"reason": "\x1b[2Jgone"})
    assert "\x1b" not in capsys.readouterr().out


def _schema(node: Any, document: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _properties(node: Any, document: dict[str, Any]) -> set[str]:
    node = _schema(node, document)
    names = set(node.get("properties", {}))
    for part in node.get("allOf", []):
        names |= _properties(part, document)
    return names


def _response(operation_id: str, status: str, document: dict[str, Any]) -> Any:
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                response = _schema(operation["responses"][status], document)
                return response["content"]["application/json"]["schema"]
    raise AssertionError(operation_id)


@pytest.mark.parametrize(
    ("shown", "operation_id", "status", "page"),
    [
        (fields.DEAD_LETTER, "listDeadLetters", "200", True),
        (fields.DEAD_LETTER_DETAIL, "getDeadLetter", "200", False),
        (fields.REPLAY, "getReplay", "200", False),
        (fields.DISCARD, "discardDeadLetters", "200", False),
        (fields.EVENT, "listEvents", "200", True),
        (fields.EVENT_DETAIL, "getEvent", "200", False),
        (fields.ERASE, "eraseEvent", "200", False),
        (fields.RESEND, "resendEvent", "200", False),
        (fields.STATS, "stats", "200", False),
        (fields.REPLAY, "listReplays", "200", True),
        (fields.AUDIT_ENTRY, "listAuditEntries", "200", True),
        (fields.ACCOUNT, "listAccounts", "200", True),
        (fields.ACCOUNT, "putAccount", "200", False),
        (fields.ENTRY, "listEntries", "200", True),
        (fields.NOTIFICATION_ATTEMPT, "listNotificationAttempts", "200", True),
    ],
)
def test_the_cli_offers_exactly_the_fields_the_api_documents(
    shown: tuple[str, ...], operation_id: str, status: str, page: bool
) -> None:
    document = _base()
    schema = _response(operation_id, status, document)
    if page:
        schema = _schema(_schema(schema, document)["properties"]["items"], document)["items"]
    assert set(shown) == _properties(schema, document)


def test_a_started_replay_offers_the_fields_of_both_answers() -> None:
    document = _base()
    started = _properties(_response("replayDeadLetters", "202", document), document)
    dry_run = _properties(_response("replayDeadLetters", "200", document), document)
    assert set(fields.REPLAY_STARTED) == started | dry_run
