"""The local stack: embedded PostgreSQL, the local emulators and every endpoint on one port.

Start order matters: database, migrations, secrets, then the HTTP server (bound first so a
port of 0 resolves before anything needs the address), then the emulators (their Pub/Sub
address is what the targets are told), then the targets, then deliveries. Stop drains the
emulators' dispatchers before the targets they deliver to, and always reaches PostgreSQL,
whatever failed before it.

`dev_processes` runs the emulators and each target as processes of their own, as in GCP;
otherwise everything shares this process (`--single-process`, most tests).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from flask import Request, Response
from sqlalchemy.engine import Engine, make_url

from common.config import Settings
from common.db import migrate
from common.db.engine import create_db_engine, set_engine
from common.emulator_stats import emulator_backlog
from common.errors import NotFound
from common.http import Handler, problem_response
from common.logging import get_logger
from common.messaging.local_wiring import LocalWiring
from common.secrets import EnvSecretStore
from common.service_identity import (
    LOCAL_CERTS_PATH,
    audience_for,
    certificates_for,
)
from common.telemetry import configure_telemetry, shutdown_telemetry
from common.topology import Topology, get_topology
from composition.adapters import Adapters
from composition.targets import TARGETS, Composition, Target, TargetName
from hookyard.broker import Broker
from hookyard.dev_secrets import ensure_dev_secrets
from hookyard.emulator_process import EMULATORS, EmulatorProcess
from hookyard.emulators import Emulators, emulator_pool_size
from hookyard.front_door import forward_to, upstream_client
from hookyard.local_identity import LocalIdentity
from hookyard.local_postgres import LocalPostgres
from hookyard.metrics_page import metrics_handler, own_page, process_pages
from hookyard.scheduler import LocalScheduler
from hookyard.server import HardenedWSGIServer, create_app, openapi_handler
from hookyard.stack_url import pubsub_record_path, record_path
from hookyard.supervisor import Supervisor, TargetProcess, target_environment
from hookyard.tasks import TaskEmulator
from workers.push import EnvelopeHook

log = get_logger(__name__)

# The front door's first path segment -> the target that serves it, as deployed.
ROUTES: dict[str, TargetName] = {
    "webhooks": "webhook",
    "cron": "cron",
    "admin": "admin",
    "console": "admin",
    "pubsub": "worker",
    "tasks": "worker",
    "health": "worker",
}


@dataclass
class LocalStack:
    settings: Settings
    topology: Topology = field(default_factory=get_topology)
    worker_hook: EnvelopeHook | None = None
    postgres: LocalPostgres | None = field(default=None, init=False)
    engine: Engine | None = field(default=None, init=False)
    emulators: Emulators | None = field(default=None, init=False)
    emulator_process: EmulatorProcess | None = field(default=None, init=False)
    targets: dict[TargetName, Target] = field(default_factory=dict, init=False)
    scheduler: LocalScheduler | None = field(default=None, init=False)
    identity: LocalIdentity | None = field(default=None, init=False)
    server: HardenedWSGIServer | None = field(default=None, init=False)
    generated_secrets: list[str] = field(default_factory=list, init=False)
    mounts: dict[str, Any] = field(default_factory=dict, init=False)
    supervisor: Supervisor | None = field(default=None, init=False)
    _upstream: httpx.Client | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _pubsub_host: str | None = field(default=None, init=False)

    @property
    def broker(self) -> Broker | None:
        """The in-process broker; None when the emulators run in their own process."""
        return self.emulators.broker if self.emulators is not None else None

    @property
    def tasks(self) -> TaskEmulator | None:
        return self.emulators.tasks if self.emulators is not None else None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{self.settings.host}:{self.server.server_port}"

    @property
    def pubsub_emulator_host(self) -> str:
        """`PUBSUB_EMULATOR_HOST` for google-cloud-pubsub clients publishing into this stack."""
        assert self._pubsub_host is not None, "the stack is not running"
        return self._pubsub_host

    @property
    def secrets_dir(self) -> Any:
        return self.settings.data_dir / "secrets"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start_database(self) -> tuple[Engine, str]:
        url = self.settings.database_url
        if url is None:
            postgres = LocalPostgres(self.settings.data_dir / "postgres")
            postgres.start()
            self.postgres = postgres
            _create_database(self.postgres.url(), self.settings.db_name)
            url = self.postgres.url(self.settings.db_name)
        # The emulators' threads and the HTTP server's (every target when they share this
        # process); in process mode few of them ever ask, and a pool opens lazily.
        pool = emulator_pool_size(self.settings)
        engine = self.engine = create_db_engine(
            self.settings.model_copy(update={"db_pool_size": pool}), url
        )
        set_engine(engine)
        migrate.upgrade(engine)
        return engine, url

    def _start(self) -> None:
        engine, url = self._start_database()
        self.generated_secrets = ensure_dev_secrets(self.secrets_dir, self.topology)
        store = EnvSecretStore(files_dir=self.secrets_dir)

        mounts = self.mounts
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = HardenedWSGIServer(
            self.settings.host,
            self.settings.port,
            create_app(mounts),
            max_connections=self.settings.http_max_connections,
            read_timeout_s=self.settings.http_read_timeout_s,
        )
        base = self.url
        settings = self.settings
        # Every service-to-service call carries a token this stack signed, and is verified
        # against the certificate it publishes, as Google's callers and certificates in GCP.
        identity = self.identity = LocalIdentity(self.secrets_dir, base)
        certs = certificates_for(settings, base)

        if settings.dev_processes:
            self.supervisor = Supervisor([TargetProcess(t) for t in TARGETS])
        worker_url = self.supervisor.by_name("worker").url if self.supervisor else base
        wiring = LocalWiring(stack_url=base, worker_url=worker_url, pubsub_emulator_host="")
        if self.supervisor is not None:
            emulators = EmulatorProcess(EMULATORS, pubsub_port=settings.pubsub_port)
            self.emulator_process = emulators
            self.supervisor.targets.insert(0, emulators)
            port = emulators.reserve_pubsub_port()
            self._pubsub_host = f"127.0.0.1:{port}"
            upstream = self._front_door_client()
            tasks_api = forward_to(EMULATORS, emulators.url, upstream)
            wiring = replace(
                wiring, pubsub_emulator_host=self._pubsub_host, tasks_endpoint=emulators.url
            )
            # Spawned now so their imports overlap the rest of the start; they reach nothing
            # of the stack's before their first request.
            self.supervisor.spawn(target_environment(settings, wiring, database_url=url))
            mounts.update(
                {
                    prefix: forward_to(name, self.supervisor.by_name(name).url, upstream)
                    for prefix, name in ROUTES.items()
                },
                metrics=self._merged_metrics(upstream),
            )
        else:
            local = self.emulators = Emulators(engine, self.topology, settings, identity, base)
            local.open()
            from hookyard.tasks.rest_api import handler as tasks_rest_api

            self._pubsub_host = local.pubsub_address
            assert local.tasks is not None
            tasks_api = tasks_rest_api(local.tasks)
            wiring = replace(wiring, pubsub_emulator_host=self._pubsub_host)
            publisher, task_queue = wiring.publisher(settings), wiring.task_queue(settings)
            adapters = Adapters(
                engine=lambda: engine,
                secrets=lambda: store,
                publisher=lambda: publisher,
                tasks=lambda: task_queue,
                certificates=lambda: certs,
                backlog=lambda: emulator_backlog(engine, self.topology),
                stack_url=base,
            )
            self._build_targets(adapters)
        mounts.update(
            {
                "emulator": certificates_handler(identity),
                "openapi.json": openapi_handler(self.topology),
                # Cloud Tasks v2 REST at Google's paths: CloudTasksClient's api_endpoint.
                "v2": tasks_api,
            }
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="http", kwargs={"poll_interval": 0.2}
        )
        self._thread.start()
        if self.supervisor is not None:
            self.supervisor.wait_ready()
        if self.emulators is not None:
            self.emulators.start()
        pubsub_record = pubsub_record_path(settings.data_dir)
        pubsub_record.write_text(self.pubsub_emulator_host + "\n", encoding="utf-8")
        if settings.scheduler_enabled:
            self.scheduler = LocalScheduler(
                self.topology, base, overrides=settings.schedule_overrides,
                token=identity.provider("cron", audience_for("cron", settings, base)),
            )  # fmt: skip
            self.scheduler.start()
        record_path(self.settings.data_dir).write_text(base + "\n", encoding="utf-8")
        log.info("hookyard listening", url=base, database=_safe_url(url))

    def _merged_metrics(self, upstream: httpx.Client) -> Handler:
        """`/metrics`: every target process's own page, merged and labelled by target."""
        assert self.supervisor is not None
        targets = [(name, self.supervisor.by_name(name).url) for name in TARGETS]
        return metrics_handler(process_pages(targets, upstream))

    def _front_door_client(self) -> httpx.Client:
        if self._upstream is None:
            self._upstream = upstream_client(self.settings.http_max_connections)
        return self._upstream

    def _build_targets(self, adapters: Adapters) -> None:
        """The single-process stack: every target in this process, on the front door."""
        telemetry = configure_telemetry(self.settings, "local")
        self.mounts["metrics"] = metrics_handler(own_page(telemetry.prometheus_text))
        composition = Composition(self.settings, adapters, self.topology, self.worker_hook)
        self.targets = {name: composition.build(name) for name in TARGETS}
        self.mounts.update({prefix: self.targets[name].handle for prefix, name in ROUTES.items()})

    def stop(self) -> None:
        if self.postgres is None and self.engine is None and self.server is None:
            return
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self._pubsub_host is not None:
            _forget_record(pubsub_record_path(self.settings.data_dir), self._pubsub_host)
            self._pubsub_host = None
        # Emulators first: the pushes and tasks on the wire finish against live targets
        # instead of failing to connect and waiting out their retries.
        if self.emulators is not None:
            self.emulators.stop()
            self.emulators = None
        if self.emulator_process is not None:
            if self.supervisor is not None:
                self.supervisor.stop_watching()
            with contextlib.suppress(Exception):
                self.emulator_process.close()
            self.emulator_process = None
        if self.server is not None:
            self._forget_url()
            if self._thread is not None:  # shutdown() waits for a serve_forever that ran
                with contextlib.suppress(Exception):
                    self.server.shutdown()
                self._thread.join(timeout=10)
                self._thread = None
            self.server.server_close()
            self.server = None
        for target in self.targets.values():
            with contextlib.suppress(Exception):
                target.close()
        if self.targets:
            shutdown_telemetry()
        self.targets = {}
        if self._upstream is not None:
            self._upstream.close()  # idle keep-alive connections would hold gunicorn's drain
            self._upstream = None
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self.engine is not None:
            self.engine.dispose()
            set_engine(None)
            self.engine = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        log.info("hookyard stopped")

    def _forget_url(self) -> None:
        """Removes the URL record if it is still ours (another stack may have replaced it)."""
        record = record_path(self.settings.data_dir)
        with contextlib.suppress(OSError):
            if record.read_text(encoding="utf-8").strip() == self.url:
                record.unlink()


def _forget_record(record: Path, value: str) -> None:
    """Removes a record if it still says `value` (another stack may have replaced it)."""
    with contextlib.suppress(OSError):
        if record.read_text(encoding="utf-8").strip() == value:
            record.unlink()


def certificates_handler(identity: LocalIdentity) -> Handler:
    """`/emulator/oauth2/v1/certs`: the certificates of the stack's tokens, public as Google's."""

    def handle(request: Request) -> Response:
        if request.path != LOCAL_CERTS_PATH:
            return problem_response(NotFound("no such issuer endpoint"), request.path)
        return identity.handle_certs(request)

    return handle


def _create_database(admin_url: str, name: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
