"""`python -m hookyard.emulator_process HTTP_FD REPORT_FD`: the local emulators in a process of
their own, as Pub/Sub and Cloud Tasks are services of their own in GCP.

Beside the front door they would share its interpreter lock: every publish, push and ack
would queue behind the proxying of incoming webhooks. Apart, the stack uses both cores, and
the broker can be killed and restarted on its own (the supervisor does, as for a target).

The Cloud Tasks REST API and `/health/live` are served on a socket the supervisor bound and
hands down (`HTTP_FD`). The Pub/Sub gRPC API binds `HOOKYARD_PUBSUB_PORT` itself (grpc cannot
adopt a socket); its address is written to `REPORT_FD` once it listens, so a port of 0
resolves before any target is told where to publish.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from flask import Request, Response

from common.errors import ConfigError
from hookyard.supervisor import READY_TIMEOUT_S, TargetProcess

EMULATORS = "emulators"
WORKER_WAIT_S = 60.0


@dataclass
class EmulatorProcess(TargetProcess):
    """The supervisor's handle on the emulators' process; restarted like a target."""

    _report: int | None = field(default=None, init=False)

    def spawn(self) -> None:
        self.port  # noqa: B018 - binds the socket on first use
        assert self._socket is not None
        fd = self._socket.fileno()
        read, write = os.pipe()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "hookyard.emulator_process", str(fd), str(write)],
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                pass_fds=(fd, write),
                start_new_session=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self._close_report()
        self._report = read

    def pubsub_address(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Waits for the process to listen for gRPC; later restarts keep the same port."""
        assert self._report is not None, "spawn first"
        line = _read_line(self._report, timeout_s)
        self._close_report()
        if not line:
            code = self.process.poll() if self.process else None
            raise ConfigError(f"the emulators exited at start (code {code})")
        address = line.decode("ascii").strip()
        self.env = {**self.env, "HOOKYARD_PUBSUB_PORT": address.rsplit(":", 1)[1]}
        return address

    def close(self) -> None:
        super().close()
        self._close_report()

    def _close_report(self) -> None:
        if self._report is not None:
            with contextlib.suppress(OSError):
                os.close(self._report)
            self._report = None


def _read_line(fd: int, timeout_s: float) -> bytes:
    """Up to a newline, EOF (the child died) or the deadline, whichever comes first."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise ConfigError(f"the emulators did not listen within {timeout_s:.0f}s")
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data


def main(argv: list[str]) -> None:
    http_fd, report_fd = (int(arg) for arg in argv)
    from common.config import get_settings
    from common.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    _serve(http_fd, report_fd, stopping)


def _serve(http_fd: int, report_fd: int, stopping: threading.Event) -> None:
    import logging

    from common.config import get_settings
    from common.db.engine import create_db_engine
    from common.topology import get_topology
    from hookyard.emulators import Emulators, emulator_pool_size
    from hookyard.local_identity import LocalIdentity
    from hookyard.server import HardenedWSGIServer, create_app
    from hookyard.tasks.rest_api import handler as tasks_rest_api

    settings = get_settings()
    if settings.worker_url is None or settings.database_url is None:
        raise ConfigError("the emulators need HOOKYARD_WORKER_URL and HOOKYARD_DATABASE_URL")
    pool = emulator_pool_size(settings)
    engine = create_db_engine(settings.model_copy(update={"db_pool_size": pool}))
    identity = LocalIdentity(settings.data_dir / "secrets", settings.broker_url)
    emulators = Emulators(engine, get_topology(), settings, identity, settings.worker_url)
    server: HardenedWSGIServer | None = None
    try:
        emulators.open()
        with os.fdopen(report_fd, "w", encoding="ascii") as report:
            report.write(emulators.pubsub_address + "\n")
        assert emulators.tasks is not None
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = create_app({"v2": tasks_rest_api(emulators.tasks), "health": _live})
        server = HardenedWSGIServer(
            "127.0.0.1", 0, app, fd=http_fd,
            max_connections=settings.http_max_connections,
            read_timeout_s=settings.http_read_timeout_s,
        )  # fmt: skip
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        _await_worker(settings.worker_url, stopping)
        if not stopping.is_set():
            emulators.start()
        stopping.wait()
    finally:
        emulators.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        engine.dispose()


def _live(request: Request) -> Response:
    from common.http import json_response

    return json_response({"status": "ok"})


def _await_worker(worker_url: str, stopping: threading.Event) -> None:
    """Until the worker answers or `WORKER_WAIT_S` passes: deliveries would only fail before."""
    import httpx

    deadline = time.monotonic() + WORKER_WAIT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline and not stopping.is_set():
            with contextlib.suppress(httpx.HTTPError):
                client.get(worker_url.rstrip("/") + "/health/live")
                return
            stopping.wait(0.1)


if __name__ == "__main__":
    main(sys.argv[1:])
