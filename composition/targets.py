"""Builds a target's request handler. Each builder imports only its own target's modules,
so a deployment loads only what its function serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from common.config import Settings
from common.topology import Topology
from composition.adapters import Adapters

if TYPE_CHECKING:
    from common.http import Handler
    from common.oidc import CallerVerifier
    from common.service_identity import Surface
    from workers.push import EnvelopeHook

TargetName = Literal["webhook", "cron", "admin", "worker"]
TARGETS: tuple[TargetName, ...] = get_args(TargetName)


@dataclass
class Target:
    """A built target: its handler and what must be closed when its process stops."""

    handle: Handler
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


@dataclass(frozen=True)
class Composition:
    settings: Settings
    adapters: Adapters
    topology: Topology
    worker_hook: EnvelopeHook | None = None

    def build(self, name: TargetName) -> Target:
        return {
            "webhook": self._webhook,
            "cron": self._cron,
            "admin": self._admin,
            "worker": self._worker,
        }[name]()

    def _verifier(self, surface: Surface) -> CallerVerifier:
        from common.service_identity import verifier_for

        adapters = self.adapters
        return verifier_for(surface, self.settings, adapters.stack_url, adapters.certificates())

    def _webhook(self) -> Target:
        from functions.webhooks import WebhookIngest

        adapters = self.adapters
        ingest = WebhookIngest(
            self.topology, adapters.secrets(), adapters.publisher(), self.settings.gcp_project
        )
        return Target(ingest.handle)

    def _cron(self) -> Target:
        from functions.cron import CronIngest

        cron = CronIngest(
            self.topology, self.adapters.tasks, self._verifier("cron"), self.settings.gcp_project
        )
        return Target(cron.handle)

    def _admin(self) -> Target:
        from common import metrics
        from common.egress import EgressPolicy
        from common.metric_observations import figures_reader
        from common.operator_identity import operator_verifier
        from functions.admin import Admin
        from functions.operations import Operations

        adapters, settings = self.adapters, self.settings
        # The gauges read what /admin/stats reads; one target reports them, as one scrape.
        metrics.observe(figures_reader(adapters.engine, adapters.backlog))
        operations = Operations(
            adapters.engine, adapters.tasks, adapters.backlog, adapters.publisher, self.topology
        )
        admin = Admin(
            adapters.engine,
            adapters.secrets(),
            settings.gcp_project,
            operations,
            EgressPolicy(allow_loopback=settings.notify_allow_loopback),
            operator_verifier(settings),
        )
        return Target(admin.handle)

    def _worker(self) -> Target:
        from common.egress import EgressPolicy
        from common.health import Health, database_ready
        from common.job_tasks import JOBS_QUEUE
        from common.message_relay import MessageRelay
        from common.outbox_relay import NOTIFICATIONS_QUEUE, OutboxRelay
        from common.replay_tasks import REPLAYS_QUEUE
        from workers.jobs import STATEMENTS_QUEUE, JobRunner, StatementWriter
        from workers.notifications import Notifier
        from workers.push import Worker, routes_for
        from workers.replay import ReplayRunner
        from workers.service import WorkerRoutes
        from workers.tasks import TaskWorker

        adapters, settings, topology = self.adapters, self.settings, self.topology
        engine, tasks = adapters.engine(), adapters.tasks()
        project = settings.gcp_project
        relay = OutboxRelay(engine, tasks)
        notifier = Notifier(
            engine,
            adapters.secrets(),
            timeout_s=settings.notify_timeout_s,
            egress=EgressPolicy(allow_loopback=settings.notify_allow_loopback),
        )
        messages = MessageRelay(engine, adapters.publisher())
        push = Worker(
            engine, project, routes_for(topology), before_handle=self.worker_hook, relay=relay,
            messages=messages, verifier=self._verifier("pubsub"),
        )  # fmt: skip
        task_worker = TaskWorker(
            engine,
            topology,
            {
                NOTIFICATIONS_QUEUE: notifier,
                REPLAYS_QUEUE: ReplayRunner(engine, topology, adapters.publisher(), tasks),
                JOBS_QUEUE: JobRunner(engine, topology, tasks, relay, messages=messages),
                STATEMENTS_QUEUE: StatementWriter(engine),
            },
            project,
            verifier=self._verifier("tasks"),
        )
        health = Health(database_ready(adapters.engine))
        routes = WorkerRoutes(push.handle, task_worker.handle, health.handle)
        return Target(routes.handle, [notifier.close])
