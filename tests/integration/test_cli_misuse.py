"""Ordinary misuse of `hookyard` is one line on stderr and exit 1 (2 for usage), never a
traceback. Each command runs as a user runs it: its own process, its own environment."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.stack import free_port


def hookyard(
    *args: str, cwd: Path, stdin: bytes = b"", **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "hookyard", *args],
        env={**clean, "HOOKYARD_DATA_DIR": str(cwd / ".hookyard"), **env},
        cwd=cwd, input=stdin.decode(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_migrate_without_a_database_url_says_what_to_set(tmp_path: Path) -> None:
    line = one_line_error(hookyard("migrate", cwd=tmp_path))
    assert "HOOKYARD_DATABASE_URL is not set" in line
    assert "postgresql+pg8000://" in line


def test_migrate_with_a_malformed_database_url(tmp_path: Path) -> None:
    result = hookyard("migrate", cwd=tmp_path, HOOKYARD_DATABASE_URL="not a url")
    assert "is not a database URL" in one_line_error(result)


def test_migrate_against_no_database_keeps_the_password_out(tmp_path: Path) -> None:
    url = f"postgresql+pg8000://hookyard:hunter2secret@127.0.0.1:{free_port()}/hookyard"
    line = one_line_error(hookyard("migrate", cwd=tmp_path, HOOKYARD_DATABASE_URL=url))
    assert line.startswith("error: cannot use the database: ")
    assert "hunter2secret" not in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HOOKYARD_PORT", "eighty"), ("HOOKYARD_ENV", "prod"), ("HOOKYARD_LOG_LEVEL", "LOUD")],
)
@pytest.mark.parametrize("command", [["stats"], ["send", "stripe", "-"], ["migrate"]])
def test_a_malformed_setting_is_named_not_a_traceback(
    tmp_path: Path, command: list[str], variable: str, value: str
) -> None:
    line = one_line_error(hookyard(*command, cwd=tmp_path, **{variable: value}))
    assert line.startswith(f"error: {variable}: ")
    assert value not in line.removeprefix(f"error: {variable}: ")


def test_send_reading_a_missing_file_or_a_directory(tmp_path: Path) -> None:
    secret = {"HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE": "whsec_x"}
    missing = hookyard("send", "stripe", "nope.json", cwd=tmp_path, **secret)
    assert one_line_error(missing) == "error: cannot read nope.json: No such file or directory"
    folder = hookyard("send", "stripe", ".", cwd=tmp_path, **secret)
    assert one_line_error(folder) == "error: cannot read .: Is a directory"


def test_send_without_a_secret_or_to_an_unknown_source(tmp_path: Path) -> None:
    no_secret = one_line_error(hookyard("send", "stripe", "-", cwd=tmp_path, stdin=b"{}"))
    assert "webhook-secret-stripe is not configured" in no_secret
    unknown = one_line_error(hookyard("send", "paypal", "-", cwd=tmp_path, stdin=b"{}"))
    assert unknown == "error: unknown source 'paypal'"


def test_operator_commands_without_a_token(tmp_path: Path) -> None:
    line = one_line_error(hookyard("dlq", "list", cwd=tmp_path))
    assert line.startswith("error: no admin token")


def test_dev_with_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    result = hookyard("dev", "--port", "99999", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--port" in result.stderr
    assert not (tmp_path / ".hookyard").exists()  # refused before anything started


def test_ctrl_c_ends_a_jq_program_that_never_returns(tmp_path: Path) -> None:
    """libjq loops in C, where Python's own Ctrl-C handling never runs."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    env = {**clean, "HOOKYARD_DATA_DIR": str(tmp_path / ".hookyard")}
    before = _children_cpu_seconds()
    finished = hookyard("cron", "list", "--jq", ".[0].job", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    whole_run = _children_cpu_seconds() - before
    command = [sys.executable, "-m", "hookyard", "cron", "list", "--jq", "last(repeat(1))"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        watched = psutil.Process(process.pid)
        # CPU time, not wall time: past twice a whole run's, it is inside the endless jq loop
        # (a loaded machine only makes this take longer).
        while _cpu_seconds(watched) < 2 * whole_run + 1.0:
            assert process.poll() is None, "the endless program ended by itself"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == -signal.SIGINT
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
