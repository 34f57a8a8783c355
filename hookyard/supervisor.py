"""Runs the four targets as their own server processes, the way Cloud Run runs them:
functions-framework's gunicorn application with its own settings (`hookyard.target_process`),
each in its own process group so stopping one stops its gunicorn workers too. The supervisor
binds each target's socket and hands it down, so a port is never raced for.

A target that dies while the stack runs is reported and restarted with backoff, as Cloud Run
would start a new instance; the stack keeps serving the others meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.config import Settings
from common.errors import ConfigError
from common.logging import get_logger
from common.messaging.local_wiring import LocalWiring

log = get_logger(__name__)

MAIN_PY = Path(__file__).resolve().parents[1] / "main.py"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def target_environment(
    settings: Settings, wiring: LocalWiring, *, database_url: str
) -> dict[str, str]:
    """A target process's environment: this one's, with every setting the stack runs on
    written out (they may have come from arguments, not the environment), pointed at the
    stack's database and at the stack itself for tokens, certificates and the emulators."""
    env = dict(os.environ)
    values = settings.model_dump(mode="json", exclude_none=True)
    values.update(
        wiring.environment(),
        env="local",
        database_url=database_url,
        data_dir=str(settings.data_dir.resolve()),
        dev_processes=False,
    )
    for name, value in values.items():
        env[f"HOOKYARD_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class TargetProcess:
    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    _socket: socket.socket | None = field(default=None, init=False)

    @property
    def port(self) -> int:
        if self._socket is None:
            self._socket = socket.create_server((self.host, 0), backlog=1024)
            self._socket.set_inheritable(True)
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def spawn(self) -> None:
        self.port  # noqa: B018 - binds the socket on first use
        assert self._socket is not None
        fd = self._socket.fileno()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "hookyard.target_process", self.name, str(fd)],
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the whole group (gunicorn drains), SIGKILL after the grace period."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(grace_s)
        if process is not None:
            # Gunicorn's workers share the group; none may outlive their arbiter.
            _signal_group(process.pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Supervisor:
    """Starts every target, waits until each answers HTTP, and restarts one that dies."""

    targets: list[TargetProcess]
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _watcher: threading.Thread | None = field(default=None, init=False)

    def spawn(self, env: Mapping[str, str]) -> None:
        """Every target not spawned yet (the emulators start first, on their own terms)."""
        for target in self.targets:
            if target.process is None:
                target.env = env
                target.spawn()

    def wait_ready(self) -> None:
        """Every target answers HTTP, or `ConfigError` naming the one that did not."""
        for target in self.targets:
            self._wait_ready(target)
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        """No more restarts: what is stopped from now on stays stopped."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=STOP_GRACE_S)
            self._watcher = None

    def stop(self) -> None:
        self.stop_watching()
        for target in self.targets:
            target.close()

    def by_name(self, name: str) -> TargetProcess:
        return next(t for t in self.targets if t.name == name)

    def _wait_ready(self, target: TargetProcess) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not target.alive():
                    code = target.process.returncode if target.process else None
                    raise ConfigError(f"the {target.name} target exited at start (code {code})")
                try:
                    client.get(target.url + "/health/live")
                except httpx.HTTPError:
                    if self._stopping.wait(0.05):
                        return
                    continue
                log.info("target ready", target=target.name, url=target.url)
                return
        raise ConfigError(f"the {target.name} target did not answer within {READY_TIMEOUT_S}s")

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for target in self.targets:
                if self._stopping.is_set() or target.alive():
                    continue
                code = target.process.returncode if target.process else None
                target.restarts += 1
                log.error(
                    "target exited; restarting",
                    target=target.name,
                    code=code,
                    restarts=target.restarts,
                )
                if self._stopping.wait(min(2.0 ** min(target.restarts, 5) / 10, 3.0)):
                    return
                target.spawn()
