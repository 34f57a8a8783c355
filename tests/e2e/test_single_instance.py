"""A second `hookyard dev` on a data directory in use is refused and leaves the first alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.test_local_stack import start_dev
from tests.support.stack import ADMIN_TOKEN, free_port, wait_for

pytestmark = pytest.mark.e2e


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def test_second_dev_on_the_same_data_dir_is_refused_and_the_first_keeps_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    pgdata = data_dir / "postgres" / "pgdata"
    first = start_dev(data_dir, free_port())
    try:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        created = httpx.put(
            f"{first.url}/admin/accounts/acct_first", json={"currency": "usd"}, headers=auth
        )
        assert created.status_code == 201
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])

        second = subprocess.run(
            [sys.executable, "-m", "hookyard", "dev"],
            env={**first.env, "HOOKYARD_PORT": str(free_port())},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"error: hookyard is already running on {data_dir} (pid {first.process.pid})"
        ]
        assert second.stdout == ""

        assert first.process.poll() is None
        assert int((pgdata / "postmaster.pid").read_text().split()[0]) == postmaster
        assert httpx.get(f"{first.url}/health/ready", timeout=10).status_code == 200
        account = httpx.get(f"{first.url}/admin/accounts/acct_first", headers=auth, timeout=10)
        assert account.status_code == 200
        assert account.json()["currency"] == "usd"
    finally:
        if first.process.poll() is None:
            assert first.stop() == 0
    assert not (pgdata / "postmaster.pid").exists()
    wait_for(lambda: not _postgres_processes(pgdata), timeout=60)
    password = (data_dir / "postgres" / "password").read_text().strip()
    assert password not in first.log_path.read_text()
    assert password not in (pgdata / "server.log").read_text()
