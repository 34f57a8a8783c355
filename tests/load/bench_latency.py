"""`hookyard dev` as a user starts it, for the benches that drive the whole local stack, and
its time to ready: cold (a new data directory: initdb, migrations) and warm (an existing one).

`make bench` takes the cold figure from the end-to-end bench's start (a new data directory
too) and restarts that stack for the warm one, which the ingest and slow-connection benches
then drive: one start per figure, none only to be thrown away. Webhook -> balance latency is
bench_ingest's figure (medians of repetitions, idle and under load). Everything listens on
127.0.0.1 only. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hookyard.local_postgres import LocalPostgres
from tests.support.stack import TEST_SECRETS, free_port

READY_BOUND_S = 120


@dataclass(frozen=True)
class DevStack:
    """A running `hookyard dev` and where to reach its parts."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    pubsub_port: int
    """Its Pub/Sub gRPC API, chosen by the bench so that nothing has to be discovered."""
    ready_s: float
    """Spawn -> the first 200 from `/health/ready`."""

    @property
    def database_url(self) -> str:
        return LocalPostgres(self.data_dir / "postgres").url("hookyard")


def start(data_dir: Path) -> DevStack:
    port, pubsub_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    env.update(TEST_SECRETS)
    env.update(
        {
            "HOOKYARD_DATA_DIR": str(data_dir),
            "HOOKYARD_PORT": str(port),
            "HOOKYARD_PUBSUB_PORT": str(pubsub_port),
            "HOOKYARD_LOG_LEVEL": "WARNING",
        }
    )
    url = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hookyard", "dev"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = began + READY_BOUND_S
    while time.perf_counter() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return DevStack(proc, url, data_dir, pubsub_port, time.perf_counter() - began)
        if proc.poll() is not None:
            raise SystemExit("hookyard dev exited before becoming ready")
        time.sleep(0.02)
    stop(proc)
    raise SystemExit(f"hookyard dev did not become ready within {READY_BOUND_S} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=60)


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[DevStack]:
    dev = start(data_dir)
    try:
        yield dev
    finally:
        stop(dev.proc)


def report(cold_s: float, warm_s: float) -> None:
    print(f"time to ready, new data dir (initdb + migrations): {cold_s:.2f} s")
    print(f"time to ready, existing data dir:                  {warm_s:.2f} s")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hookyard-bench-"))
    try:
        with running(root / "data") as dev:
            cold = dev.ready_s
        with running(root / "data") as dev:
            warm = dev.ready_s
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(cold, warm)


if __name__ == "__main__":
    main()
