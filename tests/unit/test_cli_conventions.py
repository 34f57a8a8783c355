"""`hookyard --version`, shell completion, and the reconciliation line `stats` prints."""

from __future__ import annotations

from importlib.metadata import version

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
