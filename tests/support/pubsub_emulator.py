"""Google's own Pub/Sub emulator (`gcloud beta emulators pubsub start`) for a test's length.

Where `gcloud` is not installed the test is skipped with the reason. The emulator (gcloud's
wrapper and the JVM it starts) runs in a process group of its own, which is stopped on the
way out whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.stack import free_port

START_BOUND_S = 120.0  # a cold JVM on a busy machine; only a broken install reaches it
GCLOUD_MISSING = "gcloud is not on PATH: Google's Pub/Sub emulator is not installed here"


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_gcloud() -> str:
    """gcloud's path; skips the test, saying why, where it is not installed."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip(GCLOUD_MISSING)
    return gcloud


@contextmanager
def google_pubsub_emulator(tmp_path: Path) -> Iterator[str]:
    """`PUBSUB_EMULATOR_HOST` (`127.0.0.1:PORT`) of a fresh emulator with its data under
    `tmp_path`; skips the test when gcloud is missing."""
    gcloud = require_gcloud()
    port = free_port()
    (tmp_path / "data").mkdir(parents=True)
    log_path = tmp_path / "emulator.log"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start",
             f"--host-port=127.0.0.1:{port}", f"--data-dir={tmp_path / 'data'}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_BOUND_S
        while not accepts(port):
            if process.poll() is not None:
                pytest.fail(f"the emulator exited ({process.returncode}): {log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the emulator did not listen within {START_BOUND_S}s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(process)
        assert not accepts(port), "the emulator is still listening"


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """gcloud's wrapper and the JVM it starts share the process group we created."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            continue
        # The wrapper is gone; the JVM may still be winding down in the group.
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(1)
