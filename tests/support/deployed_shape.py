"""The deployed shape on one machine, for `tests/integration/test_deployed_shape.py`.

The four targets run as their own functions-framework gunicorn processes (`Supervisor`) with
`HOOKYARD_ENV=gcp`, configured only through the environment a deployment would give them:
secrets from the environment provider, Pub/Sub through `PUBSUB_EMULATOR_HOST`, Cloud Tasks
through `HOOKYARD_CLOUD_TASKS_ENDPOINT` (`CloudTasksClient` over REST), and Google's certificates
from `fake_google`'s JWKS endpoint. What stands in for Google around them:

- Pub/Sub: Google's emulator (`google`) or Hookyard's broker with its gRPC Publisher API
  (`hookyard`), pushing through `push_front_end`, which attaches the push service account's
  token as Google's push service does.
- Cloud Tasks: Hookyard's task emulator and its v2 REST API; it signs each task's
  `oidc_token` with the test key and Google's issuer, as Cloud Tasks signs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy.engine import Engine

from common.topology import Topology, get_topology
from composition.targets import TARGETS, TargetName
from hookyard.broker import Broker
from hookyard.broker.grpc_api import PubSubGrpcServer
from hookyard.server import create_app
from hookyard.supervisor import Supervisor, TargetProcess
from hookyard.tasks import TaskEmulator
from hookyard.tasks.rest_api import handler as tasks_rest_api
from tests.support.oidc import FakeGoogle, fake_google
from tests.support.postgres import TestServer
from tests.support.pubsub_emulator import google_pubsub_emulator, require_gcloud
from tests.support.push_front_end import PushFrontEnd, push_front_end
from tests.support.stack import STANDARD_SECRET, TEST_SECRETS
from tests.support.wsgi import serving

Backend = Literal["google", "hookyard"]

PROJECT, REGION = "hookyard-shape", "us-central1"
PUSH_ACCOUNT = f"push@{PROJECT}.iam.gserviceaccount.com"
TASKS_ACCOUNT = f"tasks@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_ACCOUNT = f"scheduler@{PROJECT}.iam.gserviceaccount.com"
NOTIFY_SIGNING_KEY = STANDARD_SECRET  # a Standard Webhooks `whsec_` key


@dataclass
class DeployedShape:
    backend: Backend
    engine: Engine
    google: FakeGoogle
    supervisor: Supervisor
    tasks: TaskEmulator
    front: PushFrontEnd

    def url(self, target: TargetName) -> str:
        return self.supervisor.by_name(target).url

    @property
    def worker_url(self) -> str:
        return self.url("worker")


@contextmanager
def deployed_shape(backend: Backend, pg_server: TestServer, tmp: Path) -> Iterator[DeployedShape]:
    """Everything is stopped on the way out, in reverse order, whatever failed."""
    if backend == "google":
        require_gcloud()  # before anything starts
    topology = get_topology()
    with ExitStack() as stack:
        database = pg_server.create_database()
        stack.callback(pg_server.drop_database, database)
        engine = pg_server.engine(database)
        stack.callback(engine.dispose)
        google = stack.enter_context(fake_google(tmp / "google"))
        # Each target's socket is bound now, so the worker's URL (every token's audience and
        # Cloud Tasks' target) is known before anything is configured with it.
        supervisor = Supervisor([TargetProcess(name) for name in TARGETS])
        stack.callback(supervisor.stop)
        worker_url = supervisor.by_name("worker").url

        tasks = TaskEmulator(
            engine, topology, worker_url, project=PROJECT, location=REGION,
            minter=lambda email, audience: google.token(audience, email),
        )  # fmt: skip
        tasks.start()
        stack.callback(tasks.stop)
        tasks_url = stack.enter_context(serving(create_app({"v2": tasks_rest_api(tasks)})))

        front = stack.enter_context(
            push_front_end(worker_url, lambda: google.token(worker_url, PUSH_ACCOUNT))
        )
        if backend == "google":
            pubsub_host = stack.enter_context(google_pubsub_emulator(tmp / "pubsub"))
            create_push_topology(pubsub_host, topology, front.url, worker_url)
        else:
            pubsub_host = stack.enter_context(hookyard_broker(engine, topology, front.url))

        stack.callback(supervisor.stop)  # again, so the targets stop before what they call
        supervisor.spawn(
            target_environment(
                database_url=pg_server.url_for(database), worker_url=worker_url,
                certs_url=google.certs_url, pubsub_host=pubsub_host, tasks_url=tasks_url,
                data_dir=tmp / "data",
            )
        )  # fmt: skip
        supervisor.wait_ready()
        yield DeployedShape(backend, engine, google, supervisor, tasks, front)


def target_environment(
    *,
    database_url: str,
    worker_url: str,
    certs_url: str,
    pubsub_host: str,
    tasks_url: str,
    data_dir: Path,
) -> dict[str, str]:
    """What a deployment's environment says, and nothing of the test process's own settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("HOOKYARD_") and name != "PUBSUB_EMULATOR_HOST"
    }
    env.update(TEST_SECRETS)
    env.update(
        {
            "HOOKYARD_ENV": "gcp",
            "HOOKYARD_SECRETS": "env",
            "HOOKYARD_SECRET_NOTIFY_SIGNING_KEY": NOTIFY_SIGNING_KEY,
            "HOOKYARD_DATA_DIR": str(data_dir),
            "HOOKYARD_DATABASE_URL": database_url,
            "HOOKYARD_GCP_PROJECT": PROJECT,
            "HOOKYARD_GCP_REGION": REGION,
            "HOOKYARD_WORKER_URL": worker_url,
            "HOOKYARD_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
            "HOOKYARD_TASKS_SERVICE_ACCOUNT": TASKS_ACCOUNT,
            "HOOKYARD_SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_ACCOUNT,
            "HOOKYARD_OIDC_CERTS_URL": certs_url,
            "PUBSUB_EMULATOR_HOST": pubsub_host,
            "HOOKYARD_CLOUD_TASKS_ENDPOINT": tasks_url,
        }
    )
    return env


@contextmanager
def hookyard_broker(engine: Engine, topology: Topology, push_base_url: str) -> Iterator[str]:
    """Hookyard's broker pushing to `push_base_url`; its gRPC API's `PUBSUB_EMULATOR_HOST`.
    It attaches no token of its own: the push front end attaches the one Google would."""
    broker = Broker(engine, topology, push_base_url, project=PROJECT)
    broker.install()
    grpc_api = PubSubGrpcServer(broker, "127.0.0.1", 0)
    try:
        grpc_api.start()
        broker.start()
        yield grpc_api.address
    finally:
        grpc_api.stop()
        broker.stop()


def create_push_topology(
    pubsub_host: str, topology: Topology, push_base_url: str, audience: str
) -> None:
    """The topology's topics and push subscriptions on Google's emulator, as Terraform creates
    them in a project: filter, retry and dead-letter policies included. The emulator keeps
    them all but, as of this writing, neither filters pushes nor attaches the OIDC token."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
    try:
        for topic in topology.topics:
            publisher.create_topic(name=publisher.topic_path(PROJECT, topic.name))
        for sub in topology.subscriptions:
            request: dict[str, object] = {
                "name": subscriber.subscription_path(PROJECT, sub.name),
                "topic": publisher.topic_path(PROJECT, sub.topic),
                "push_config": {
                    "push_endpoint": push_base_url + sub.push_path,
                    "oidc_token": {"service_account_email": PUSH_ACCOUNT, "audience": audience},
                },
                "ack_deadline_seconds": sub.ack_deadline_seconds,
                "enable_message_ordering": sub.enable_message_ordering,
                "filter": sub.filter,
            }
            if sub.retry_policy is not None:
                request["retry_policy"] = {
                    "minimum_backoff": {"seconds": int(sub.retry_policy.minimum_backoff_s)},
                    "maximum_backoff": {"seconds": int(sub.retry_policy.maximum_backoff_s)},
                }
            if sub.dead_letter_policy is not None:
                policy = sub.dead_letter_policy
                request["dead_letter_policy"] = {
                    "dead_letter_topic": publisher.topic_path(PROJECT, policy.dead_letter_topic),
                    "max_delivery_attempts": policy.max_delivery_attempts,
                }
            subscriber.create_subscription(request=request)
    finally:
        subscriber.close()
        publisher.transport.close()
