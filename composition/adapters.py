"""What a target reaches outside its own code, as factories.

Factories rather than instances: a target builds only what its requests use, so the webhook
target never creates a database engine, and nothing connects anywhere at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from common.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from common.messaging.publisher import Publisher
    from common.messaging.tasks import TaskQueue
    from common.oidc import CertificateCache
    from common.secrets import SecretStore

StatsProvider = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Adapters:
    """`stack_url` is the local stack's resolved address (its port may have been 0): the
    issuer and audience of the tokens it mints. None in a deployment."""

    engine: Callable[[], Engine]
    secrets: Callable[[], SecretStore]
    publisher: Callable[[], Publisher]
    tasks: Callable[[], TaskQueue]
    certificates: Callable[[], CertificateCache]
    backlog: StatsProvider | None = None
    stack_url: str | None = None


def from_settings(settings: Settings) -> Adapters:
    """The process-wide adapters a deployed target uses, each built once on first use; no
    adapter's module is imported before a request needs it."""

    def engine() -> Engine:
        from common.db.engine import get_engine

        return get_engine()

    def secrets() -> SecretStore:
        from common.secrets import get_secret_store

        return get_secret_store()

    def publisher() -> Publisher:
        from common.messaging.publisher import get_publisher

        return get_publisher()

    def tasks() -> TaskQueue:
        from common.messaging.publisher import get_task_queue

        return get_task_queue()

    @cache
    def certificates() -> CertificateCache:
        from common.service_identity import certificates_for

        return certificates_for(settings)

    def local_backlog() -> dict[str, Any]:
        from common.emulator_stats import emulator_backlog
        from common.topology import get_topology

        return emulator_backlog(engine(), get_topology())

    backlog: StatsProvider = local_backlog
    if settings.env == "gcp":
        from common.monitoring_stats import monitoring_backlog
        from common.topology import get_topology

        backlog = monitoring_backlog(settings.gcp_project, settings.gcp_region, get_topology())
    return Adapters(engine, secrets, publisher, tasks, certificates, backlog)
