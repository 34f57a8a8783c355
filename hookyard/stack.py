"""The local stack: embedded PostgreSQL, the local broker and every endpoint on one port.

Start order matters: database, migrations, secrets, then the HTTP server (bound first so a
port of 0 resolves before anything needs the address), then the broker's dispatcher. Stop
drains the dispatchers before the server, and always reaches PostgreSQL, whatever failed
before it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Request, Response
from sqlalchemy.engine import Engine, make_url

from common.config import Settings
from common.db import migrate
from common.db.engine import create_db_engine, set_engine
from common.egress import EgressPolicy
from common.errors import NotFound, Problem
from common.health import Health, database_ready
from common.http import Handler, problem_response, reject_cross_site, require_json_body
from common.job_tasks import JOBS_QUEUE
from common.logging import get_logger
from common.messaging.local import LocalPublisher
from common.messaging.tasks import LocalTaskQueue
from common.oidc import CallerVerifier
from common.outbox_relay import NOTIFICATIONS_QUEUE, OutboxRelay
from common.replay_tasks import REPLAYS_QUEUE
from common.secrets import EnvSecretStore
from common.service_identity import (
    LOCAL_CERTS_PATH,
    LOCAL_ISSUER_PATH,
    Surface,
    audience_for,
    certificates_for,
    verifier_for,
)
from common.topology import Topology, get_topology
from functions.admin import Admin
from functions.cron import CronIngest
from functions.operations import Operations
from functions.webhooks import WebhookIngest
from hookyard.broker import Broker
from hookyard.broker.grpc_api import PubSubGrpcServer
from hookyard.broker.http import handle_publish
from hookyard.dev_secrets import ensure_dev_secrets
from hookyard.emulator_stats import emulator_backlog
from hookyard.local_identity import LocalIdentity
from hookyard.local_postgres import LocalPostgres
from hookyard.scheduler import LocalScheduler
from hookyard.server import HardenedWSGIServer, create_app, openapi_handler
from hookyard.stack_url import pubsub_record_path, record_path
from hookyard.tasks import TaskEmulator
from hookyard.tasks.http import handle as handle_tasks_api
from workers.jobs import STATEMENTS_QUEUE, JobRunner, StatementWriter
from workers.notifications import Notifier
from workers.push import EnvelopeHook, Worker
from workers.replay import ReplayRunner
from workers.tasks import TaskWorker

log = get_logger(__name__)


@dataclass
class LocalStack:
    settings: Settings
    topology: Topology = field(default_factory=get_topology)
    worker_hook: EnvelopeHook | None = None
    postgres: LocalPostgres | None = field(default=None, init=False)
    engine: Engine | None = field(default=None, init=False)
    broker: Broker | None = field(default=None, init=False)
    pubsub_grpc: PubSubGrpcServer | None = field(default=None, init=False)
    tasks: TaskEmulator | None = field(default=None, init=False)
    notifier: Notifier | None = field(default=None, init=False)
    scheduler: LocalScheduler | None = field(default=None, init=False)
    identity: LocalIdentity | None = field(default=None, init=False)
    server: HardenedWSGIServer | None = field(default=None, init=False)
    generated_secrets: list[str] = field(default_factory=list, init=False)
    mounts: dict[str, Any] = field(default_factory=dict, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{self.settings.host}:{self.server.server_port}"

    @property
    def pubsub_emulator_host(self) -> str:
        """`PUBSUB_EMULATOR_HOST` for google-cloud-pubsub clients publishing into this stack."""
        assert self.pubsub_grpc is not None
        return self.pubsub_grpc.address

    @property
    def secrets_dir(self) -> Any:
        return self.settings.data_dir / "secrets"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        url = self.settings.database_url
        if url is None:
            postgres = LocalPostgres(self.settings.data_dir / "postgres")
            postgres.start()
            self.postgres = postgres
            _create_database(self.postgres.url(), self.settings.db_name)
            url = self.postgres.url(self.settings.db_name)
        self.engine = create_db_engine(self.settings, url)
        set_engine(self.engine)
        migrate.upgrade(self.engine)
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
        project, location = settings.gcp_project, settings.gcp_region
        engine = self.engine
        # Every service-to-service call carries a token this stack signed, and is verified
        # against the certificate it publishes, as Google's callers and certificates in GCP.
        identity = self.identity = LocalIdentity(self.secrets_dir, base)
        certs = certificates_for(settings, base)

        def verifier(surface: Surface) -> CallerVerifier:
            return verifier_for(surface, settings, base, certs)

        self.broker = Broker(
            engine, self.topology, base, project=project, token=identity.provider("pubsub")
        )
        self.broker.install()
        self.tasks = TaskEmulator(
            engine, self.topology, base, project=project, location=location,
            token=identity.provider("tasks"),
        )  # fmt: skip
        self.tasks.install()
        publisher = LocalPublisher(
            base, project, settings.publish_timeout_s, token=identity.provider("emulator")
        )
        task_queue = LocalTaskQueue(
            base, project, location, settings.publish_timeout_s,
            token=identity.provider("emulator"),
        )  # fmt: skip
        ingest = WebhookIngest(self.topology, store, publisher, project)
        relay = OutboxRelay(engine, task_queue)
        egress = EgressPolicy(allow_loopback=settings.notify_allow_loopback)
        self.notifier = Notifier(engine, store, timeout_s=settings.notify_timeout_s, egress=egress)
        worker = Worker(
            engine, project, before_handle=self.worker_hook, relay=relay,
            verifier=verifier("pubsub"),
        )  # fmt: skip
        task_worker = TaskWorker(
            engine,
            self.topology,
            {
                NOTIFICATIONS_QUEUE: self.notifier,
                REPLAYS_QUEUE: ReplayRunner(engine, self.topology, publisher, task_queue),
                JOBS_QUEUE: JobRunner(engine, self.topology, task_queue, relay),
                STATEMENTS_QUEUE: StatementWriter(engine),
            },
            project,
            verifier=verifier("tasks"),
        )
        operations = Operations(
            lambda: engine, lambda: task_queue, lambda: emulator_backlog(engine)
        )
        mounts.update(
            {
                "webhooks": ingest.handle,
                "admin": Admin(lambda: engine, store, project, operations, egress).handle,
                "pubsub": worker.handle,
                "tasks": task_worker.handle,
                "cron": CronIngest(
                    self.topology,
                    lambda: task_queue,
                    verifier("cron"),
                    project,
                ).handle,
                "health": Health(database_ready(lambda: engine)).handle,
                "emulator": emulator_handler(
                    self.broker, self.tasks, identity, verifier("emulator")
                ),
                "openapi.json": openapi_handler(self.topology),
            }
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="http", kwargs={"poll_interval": 0.2}
        )
        self._thread.start()
        self.broker.start()
        # Google's Pub/Sub API for the client libraries, after the broker it publishes into.
        pubsub_grpc = PubSubGrpcServer(self.broker, "127.0.0.1", settings.pubsub_port)
        pubsub_grpc.start()
        self.pubsub_grpc = pubsub_grpc
        pubsub_record = pubsub_record_path(settings.data_dir)
        pubsub_record.write_text(self.pubsub_emulator_host + "\n", encoding="utf-8")
        self.tasks.start()
        if settings.scheduler_enabled:
            self.scheduler = LocalScheduler(
                self.topology, base, overrides=settings.schedule_overrides,
                token=identity.provider("cron", audience_for("cron", settings, base)),
            )  # fmt: skip
            self.scheduler.start()
        record_path(self.settings.data_dir).write_text(base + "\n", encoding="utf-8")
        log.info("hookyard listening", url=base, database=_safe_url(url))

    def stop(self) -> None:
        if self.postgres is None and self.engine is None and self.server is None:
            return
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.pubsub_grpc is not None:
            _forget_record(pubsub_record_path(self.settings.data_dir), self.pubsub_emulator_host)
            self.pubsub_grpc.stop()
            self.pubsub_grpc = None
        # Dispatchers first: the pushes and tasks on the wire finish against a live server
        # instead of failing to connect and waiting out their retries.
        for component in (self.broker, self.tasks):
            if component is not None:
                with contextlib.suppress(Exception):
                    component.stop()
        self.broker = self.tasks = None
        if self.server is not None:
            self._forget_url()
            with contextlib.suppress(Exception):
                self.server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self.server.server_close()
            self.server = None
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None
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


def emulator_handler(
    broker: Broker, tasks: TaskEmulator, identity: LocalIdentity, verifier: CallerVerifier
) -> Handler:
    """`/emulator/pubsub/...` and `/emulator/tasks/...`, the two local Google APIs, for the
    stack's own callers only; `/emulator/oauth2/v1/certs`, public as Google's is."""

    def handle(request: Request) -> Response:
        if request.path.startswith(LOCAL_ISSUER_PATH + "/"):
            if request.path != LOCAL_CERTS_PATH:
                return problem_response(NotFound("no such issuer endpoint"), request.path)
            return identity.handle_certs(request)
        try:
            reject_cross_site(request)
            verifier.verify(request)
            require_json_body(request)
        except Problem as problem:
            return problem_response(problem, request.path)
        if request.path.startswith("/emulator/tasks/"):
            return handle_tasks_api(tasks, request)
        return handle_publish(broker, request)

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
