"""The README's "Add a handler in 5 minutes", followed verbatim: its handler module, its
topology lines and its commands, run against the real stack."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

import handlers
from common.topology import Topology, get_topology
from hookyard.cli import app
from tests.support.postgres import TestServer
from tests.support.stack import running_stack, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Add a handler in 5 minutes")
    return text[start : text.index("\n## ", start)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)


@pytest.fixture
def tutorial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Topology:
    """Writes the README's module where `handlers.<name>` finds it, without touching the
    repository, and returns the shipped topology with the README's lines added."""
    [source] = blocks("python")
    first_line = source.splitlines()[0]
    assert first_line.startswith("# handlers/")
    (tmp_path / Path(first_line.removeprefix("# ")).name).write_text(source)
    monkeypatch.setattr(handlers, "__path__", [*handlers.__path__, str(tmp_path)])
    [snippet] = blocks("yaml")
    added: dict[str, list[Any]] = yaml.safe_load(snippet)
    raw = get_topology().model_dump()
    for key, items in added.items():
        raw[key].extend(items)
    return Topology.model_validate(raw)


def commands() -> list[list[str]]:
    [console] = blocks("console")
    return [shlex.split(line[2:]) for line in console.splitlines() if line.startswith("$ ")]


@pytest.fixture
def stack_url(
    pg_server: TestServer, database: str, tmp_path: Path, tutorial: Topology
) -> Iterator[tuple[str, Any]]:
    with running_stack(pg_server, database, tmp_path / "stack", topology=tutorial) as stack:
        yield stack.url, stack.engine


def test_the_readme_handler_runs_as_the_readme_says(stack_url: tuple[str, Any]) -> None:
    url, engine = stack_url
    runner = CliRunner()

    def applied() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT outcome FROM inbox WHERE subscription = 'welcome-email'")
            ).scalar()

    [send, look] = commands()
    assert send[:2] == ["hookyard", "trigger"]
    assert look[:3] == ["hookyard", "events", "list"]
    sent = runner.invoke(app, [*send[1:], "--url", url], env={"HOOKYARD_URL": None})
    assert sent.exit_code == 0, (sent.stdout, sent.stderr)
    assert wait_for(applied) == "applied"
    with engine.connect() as conn:
        [message] = conn.execute(
            sa.text(
                "SELECT topic, data FROM outbound_messages WHERE subscription = 'welcome-email'"
            )
        ).all()
    assert message.topic == "emails"
    assert b'"to":"ada@example.com"' in bytes(message.data)
    # A terminal as wide as a laptop's: at 80 columns the table wraps the type.
    wide = {"HOOKYARD_URL": None, "COLUMNS": "160"}
    listed = runner.invoke(app, [*look[1:], "--url", url], env=wide)
    assert listed.exit_code == 0, (listed.stdout, listed.stderr)
    assert "customer.created" in listed.stdout
    assert "welcome-email:applied" in listed.stdout
