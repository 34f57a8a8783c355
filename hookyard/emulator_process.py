"""`python -m hookyard.emulator_process HTTP_FD PORT_MODE`: the local emulators in a process of
their own, as Pub/Sub and Cloud Tasks are services of their own in GCP.

Beside the front door they would share its interpreter lock: every publish, push and ack
would queue behind the proxying of incoming webhooks. Apart, the stack uses both cores, and
the broker can be killed and restarted on its own (the supervisor does, as for a target).

The Cloud Tasks REST API and `/health/live` are served on a socket the supervisor bound and
hands down (`HTTP_FD`); ready means the Pub/Sub API listens too. grpc cannot adopt a socket,
so the Pub/Sub port is chosen before the process starts, and the targets are told it at
once: a port asked for by number is checked free and bound by the child alone (`own`); a
free one (port 0) is held by the supervisor on a socket bound with SO_REUSEPORT that never
listens, and the child shares it (`reserved`). Either way a restart comes back on it.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from flask import Request, Response

from common.errors import ConfigError
from hookyard.supervisor import TargetProcess

EMULATORS = "emulators"
WORKER_WAIT_S = 60.0
PortMode = Literal["own", "reserved"]


@dataclass
class EmulatorProcess(TargetProcess):
    """The supervisor's handle on the emulators' process; restarted like a target."""

    pubsub_port: int = 0
    _mode: PortMode = field(default="own", init=False)
    _reservation: socket.socket | None = field(default=None, init=False)

    def reserve_pubsub_port(self) -> int:
        """The port the Pub/Sub API will listen on, known before the process starts."""
        if self.pubsub_port:
            _check_free(self.host, self.pubsub_port)
            return self.pubsub_port
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((self.host, 0))
        self._reservation, self._mode = holder, "reserved"
        self.pubsub_port = holder.getsockname()[1]
        return self.pubsub_port

    def spawn(self) -> None:
        self.port  # noqa: B018 - binds the socket on first use
        assert self._socket is not None
        fd = self._socket.fileno()
        env = {**self.env, "HOOKYARD_PUBSUB_PORT": str(self.pubsub_port)}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "hookyard.emulator_process", str(fd), self._mode],
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
        )

    def close(self) -> None:
        super().close()
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None


def _check_free(host: str, port: int) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen for Pub/Sub gRPC on {host}:{port}: the port is in use "
            "(HOOKYARD_PUBSUB_PORT moves it; 0 picks a free one)"
        ) from exc
    finally:
        probe.close()


def main(argv: list[str]) -> None:
    http_fd, mode = int(argv[0]), argv[1]
    from common.config import get_settings
    from common.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    _serve(http_fd, mode == "reserved", stopping)


def _serve(http_fd: int, reserved_port: bool, stopping: threading.Event) -> None:
    import logging

    from common.config import get_settings
    from common.db.engine import create_db_engine
    from common.topology import get_topology
    from hookyard.broker.broker import MAX_CONCURRENT_PUSHES
    from hookyard.emulators import Emulators, emulator_pool_size
    from hookyard.local_identity import LocalIdentity
    from hookyard.server import HardenedWSGIServer, create_app
    from hookyard.tasks.rest_api import handler as tasks_rest_api

    settings = get_settings()
    if settings.worker_url is None or settings.database_url is None:
        raise ConfigError("the emulators need HOOKYARD_WORKER_URL and HOOKYARD_DATABASE_URL")
    pool = emulator_pool_size(settings)
    engine = create_db_engine(settings.model_copy(update={"db_pool_size": pool}))
    # The dispatcher's leases and acks wait for no disk flush: the one before a push is on
    # every webhook's path to its balance, and a lost one only means a push again.
    bookkeeping = create_db_engine(
        settings.model_copy(update={"db_pool_size": MAX_CONCURRENT_PUSHES + 2}),
        asynchronous_commit=True,
    )
    identity = LocalIdentity(settings.data_dir / "secrets", settings.broker_url)
    emulators = Emulators(
        engine, get_topology(), settings, identity, settings.worker_url, reserved_port,
        bookkeeping_engine=bookkeeping,
    )  # fmt: skip
    server: HardenedWSGIServer | None = None
    try:
        emulators.open()
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
        bookkeeping.dispose()
        engine.dispose()


def _live(request: Request) -> Response:
    """`/health/live`, what the supervisor asks every process it runs."""
    from common.errors import NotFound
    from common.http import json_response, require_method

    require_method(request, "GET", "HEAD")
    if request.path != "/health/live":
        raise NotFound(f"no route for {request.path}")
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
