"""`hookyard dev` in a process of its own, as a user runs it, with the environment a test picks,
and the processes it runs (the front door, the emulators, each target's gunicorn arbiter and
workers) for measuring them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.support.secret_scan import assert_log_clean
from tests.support.stack import TEST_SECRETS, free_port, wait_for


@dataclass(frozen=True)
class DevProcess:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    data_dir: Path
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        """The stack's processes: `hookyard dev` and everything it started."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]


@contextmanager
def dev_process(data_dir: Path, **settings: str) -> Iterator[DevProcess]:
    """`settings` are `HOOKYARD_*` variables without the prefix (`DATABASE_URL=...`); the
    stack listens on 127.0.0.1 only, with the test secrets. Stopped as Ctrl-C would."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    env.update(TEST_SECRETS)
    env.update({f"HOOKYARD_{name}": value for name, value in settings.items()})
    env.update(
        HOOKYARD_DATA_DIR=str(data_dir), HOOKYARD_HOST="127.0.0.1", HOOKYARD_PORT=str(port),
        HOOKYARD_PUBSUB_PORT="0",
    )  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
    process, log_path = launch_dev(env, data_dir, port)
    dev = DevProcess(process, f"http://127.0.0.1:{port}", port, data_dir, log_path)
    try:
        yield dev
    finally:
        _stop(process)
    assert_log_clean(log_path, data_dir)


def launch_dev(
    env: dict[str, str], data_dir: Path, port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """Starts `hookyard dev` with `env`, its output in a log beside the data directory, and
    waits until it answers ready (failing with the log's tail if it exits first)."""
    log_path = data_dir.parent / f"dev-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hookyard", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"hookyard dev exited early:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=180, interval=0.1)
    except BaseException:
        _stop(process)
        raise
    return process, log_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as Ctrl-C; if it does not finish in time, every process it started is
    killed by its id, then itself."""
    if process.poll() is not None:
        return
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.kill()
        process.wait(timeout=60)
