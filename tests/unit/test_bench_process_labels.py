"""The end-to-end bench names each Hookyard process in its RSS table; a wrong or unstable name
would compare one process's memory with another's, or drop a process from the table."""

from __future__ import annotations

from tests.load.bench_memory import labels

PYTHON = "/repo/.venv/bin/python"
DEV = [PYTHON, "-m", "hookyard", "dev"]
POSTGRES = ["/tmp/pg/bin/postgres", "-D", "/data/postgres"]


def target(name: str) -> list[str]:
    return [PYTHON, "-m", "hookyard.target_process", name, "7"]


def test_today_s_layout_names_the_main_process_for_everything_it_serves() -> None:
    processes = {
        100: (1, DEV),
        101: (100, POSTGRES),
        102: (101, ["postgres: checkpointer"]),
        110: (100, target("webhook")),
        111: (110, target("webhook")),
        112: (110, target("webhook")),
        120: (100, target("worker")),
        121: (120, target("worker")),
    }
    assert labels(100, processes) == [
        (100, "hookyard dev (front door, broker, tasks, scheduler)"),
        (110, "target webhook, gunicorn arbiter"),
        (111, "target webhook, gunicorn worker"),
        (112, "target webhook, gunicorn worker"),
        (120, "target worker, gunicorn arbiter"),
        (121, "target worker, gunicorn worker"),
    ]


def test_the_emulators_own_process_is_named_and_the_main_one_says_what_it_keeps() -> None:
    processes = {
        100: (1, DEV),
        101: (100, POSTGRES),
        105: (100, [PYTHON, "-m", "hookyard.emulator_process"]),
        110: (100, target("admin")),
        111: (110, target("admin")),
    }
    assert labels(100, processes) == [
        (100, "hookyard dev (front door, scheduler)"),
        (105, "emulators (Pub/Sub, Cloud Tasks)"),
        (110, "target admin, gunicorn arbiter"),
        (111, "target admin, gunicorn worker"),
    ]


def test_a_process_that_is_gone_or_not_hookyard_s_is_left_out() -> None:
    assert labels(100, {}) == []
    assert labels(100, {100: (1, ["/usr/bin/sleep", "60"])}) == []
