"""The worker service as deployed: push and task endpoints plus health, on the process-wide
engine, publisher and task queue (Pub/Sub and Cloud Tasks in GCP, the emulators locally)."""

from __future__ import annotations

from functools import lru_cache

from flask import Request, Response

from common.config import get_settings
from common.db.engine import get_engine
from common.egress import EgressPolicy
from common.errors import NotFound
from common.health import Health, database_ready
from common.http import problem_response
from common.job_tasks import JOBS_QUEUE
from common.messaging.publisher import get_publisher, get_task_queue
from common.oidc import CertificateCache
from common.outbox_relay import NOTIFICATIONS_QUEUE, OutboxRelay
from common.replay_tasks import REPLAYS_QUEUE
from common.secrets import get_secret_store
from common.service_identity import certificates_for, verifier_for
from common.topology import get_topology
from workers.jobs import STATEMENTS_QUEUE, JobRunner, StatementWriter
from workers.notifications import Notifier
from workers.push import Worker
from workers.replay import ReplayRunner
from workers.tasks import TaskHandler, TaskWorker


@lru_cache(maxsize=1)
def _certificates() -> CertificateCache:
    return certificates_for(get_settings())


@lru_cache(maxsize=1)
def _worker() -> Worker:
    engine = get_engine()
    relay = OutboxRelay(engine, get_task_queue())
    settings = get_settings()
    return Worker(
        engine,
        settings.gcp_project,
        relay=relay,
        verifier=verifier_for("pubsub", settings, certs=_certificates()),
    )


@lru_cache(maxsize=1)
def _tasks() -> TaskWorker:
    engine, settings, topology = get_engine(), get_settings(), get_topology()
    handlers: dict[str, TaskHandler] = {
        NOTIFICATIONS_QUEUE: Notifier(
            engine,
            get_secret_store(),
            timeout_s=settings.notify_timeout_s,
            egress=EgressPolicy(allow_loopback=settings.notify_allow_loopback),
        ),
        REPLAYS_QUEUE: ReplayRunner(engine, topology, get_publisher(), get_task_queue()),
        JOBS_QUEUE: JobRunner(
            engine, topology, get_task_queue(), OutboxRelay(engine, get_task_queue())
        ),
        STATEMENTS_QUEUE: StatementWriter(engine),
    }
    verifier = verifier_for("tasks", settings, certs=_certificates())
    return TaskWorker(engine, topology, handlers, settings.gcp_project, verifier=verifier)


@lru_cache(maxsize=1)
def _health() -> Health:
    return Health(database_ready(get_engine))


def handle(request: Request) -> Response:
    if request.path.startswith("/pubsub/"):
        return _worker().handle(request)
    if request.path.startswith("/tasks/"):
        return _tasks().handle(request)
    if request.path.startswith("/health/"):
        return _health().handle(request)
    return problem_response(NotFound(f"no route for {request.path}"), request.path)
