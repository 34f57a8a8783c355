"""`hookyard --version`, shell completion, and the reconciliation line `stats` prints."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import typer.main
from typer.testing import CliRunner

from hookyard.cli import app
from hookyard.operator_cli import _reconciliation_line


def test_version_prints_the_installed_version_and_nothing_else() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"hookyard {version('hookyard')}\n"


def test_completion_script_is_offered_for_bash() -> None:
    result = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0
    assert "_hookyard_completion" in result.output


def test_the_last_reconciliation_reads_in_one_line() -> None:
    assert str(_reconciliation_line(None)) == "last reconciliation: never run"
    ok = {"ok": True, "problem_count": 0, "checked_at": "2026-12-01T10:00:00+00:00"}
    assert str(_reconciliation_line(ok)) == (
        "last reconciliation: ok, checked 2026-12-01T10:00:00+00:00"
    )
    bad = {**ok, "ok": False, "problem_count": 2, "problems": [{"a": 1}, {"b": "\x1b[2J"}]}
    line = str(_reconciliation_line(bad))
    assert line.startswith("last reconciliation: 2 problem(s), checked")
    assert "\x1b" not in line


def _commands() -> list[tuple[str, Any]]:
    """Every leaf command of `hookyard`, with its path."""
    found: list[tuple[str, Any]] = []

    def walk(path: str, command: Any) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(f"{path} {name}", child)
        else:
            found.append((path, command))

    walk("hookyard", typer.main.get_command(app))
    return found


def _options(command: Any) -> dict[str, Any]:
    return {name: p for p in command.params for name in getattr(p, "opts", [])}


def test_every_json_command_takes_fields_and_jq() -> None:
    with_json = [(path, _options(c)) for path, c in _commands() if "--json" in _options(c)]
    assert len(with_json) >= 20
    for path, options in with_json:
        assert not options["--json"].is_flag, f"{path}: --json takes an optional field list"
        assert "--jq" in options, f"{path} has --json but no --jq"


def test_one_meaning_per_flag_name() -> None:
    for path, command in _commands():
        options = _options(command)
        if "--reason" in options:
            assert options["--reason"].help.startswith("Why"), f"{path}: --reason is the audit note"
        if "--error" in options:
            assert "failure reason" in options["--error"].help, path
