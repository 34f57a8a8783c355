"""What the code uses in GCP exists in Terraform with the access it needs, and nothing more.

Names come from the code itself (tests/infra/code_references.py reads the deployed modules;
the worker's and task worker's route tables are built as the worker builds them), Terraform's
side from evaluating infra/modules/topology and infra/modules/access offline. Each check is
also shown to fail on a topology or a source file with the mistake it guards against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.topology import TOPOLOGY_PATH, Topology, load_topology
from tests.infra import code_references
from tests.infra.code_references import SOURCE_SECRET, Reference, secret_reads
from tests.support.terraform import evaluate
from workers.jobs import JobRunner
from workers.push import DEAD_LETTERS, routes_for, unserved_subscriptions

ACCOUNTS = {
    role: f"hookyard-{role}@p.iam.gserviceaccount.com"
    for role in ("webhook", "cron", "admin", "worker", "migrate", "push", "tasks", "scheduler")
}
PUBSUB_AGENT = "serviceAccount:service-42@gcp-sa-pubsub.iam.gserviceaccount.com"

# Which deployed service runs a file's code: the image runs every file in every service, but
# each target calls only its own (composition/targets.py).
READERS_BY_PATH = {
    "common/db/engine.py": {"admin", "worker", "migrate"},
    "functions/admin.py": {"admin"},
    "functions/webhooks.py": {"webhook"},
    "workers/notifications.py": {"worker"},
}


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("infra-access")
    return evaluate(
        workdir,
        {
            "topology": ("modules/topology", {"topology_file": str(TOPOLOGY_PATH)}),
            "access": (
                "modules/access",
                {
                    "topology": {"$module": "topology"},
                    "accounts": ACCOUNTS,
                    "project_id": "p",
                    "project_number": "42",
                    "database_instance": "hookyard-db",
                    "operators": ["ops@example.com"],
                },
            ),
        },
    )


def _sa(role: str) -> str:
    return f"serviceAccount:{ACCOUNTS[role]}"


def _undeclared_secrets(reads: list[Reference], topology: Topology) -> list[str]:
    declared = set(topology.all_secret_names())
    return [
        f"{read.where()}: {read.name or 'a name this test cannot resolve'}"
        for read in reads
        if read.name != SOURCE_SECRET and read.name not in declared
    ]


# --- subscriptions and routes


def test_every_subscription_reaches_a_worker_route_and_every_route_has_one(
    infra: dict[str, Any],
) -> None:
    topology = load_topology()
    routes = routes_for(topology)
    assert unserved_subscriptions(topology, routes) == []
    pushed_to = {s["push_path"] for s in infra["topology"]["subscriptions"].values()}
    assert pushed_to == {f"/pubsub/{name}" for name in (*routes, DEAD_LETTERS)}


def test_a_subscription_without_a_route_is_caught(tmp_path: Path) -> None:
    raw = yaml.safe_load(TOPOLOGY_PATH.read_text(encoding="utf-8"))
    raw["subscriptions"].append(
        {"name": "audit", "topic": "events", "push_path": "/pubsub/audit"}
    )  # fmt: skip
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    topology = load_topology(path)
    assert unserved_subscriptions(topology, routes_for(topology)) == ["audit"]


# --- secrets


def test_every_secret_the_code_reads_is_declared() -> None:
    reads = secret_reads()
    assert {r.name for r in reads} >= {"db-password", "admin-token", SOURCE_SECRET}
    assert _undeclared_secrets(reads, load_topology()) == []


def test_a_secret_read_but_not_declared_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "functions" / "reports.py"
    module.parent.mkdir()
    module.write_text(
        'REPORTS_KEY = "reports-key"\n\n\ndef key(store):\n    return store.values(REPORTS_KEY)\n',
        encoding="utf-8",
    )
    reads = secret_reads([module], root=tmp_path)
    assert _undeclared_secrets(reads, load_topology()) == ["functions/reports.py:5: reports-key"]


def test_each_secret_is_readable_by_exactly_the_services_that_read_it(
    infra: dict[str, Any],
) -> None:
    topology = load_topology()
    expected: set[tuple[str, str]] = set()
    for read in secret_reads():
        assert read.path in READERS_BY_PATH, f"{read.where()}: which service runs this code?"
        names = [s.secret for s in topology.sources] if read.name == SOURCE_SECRET else [read.name]
        expected |= {(str(n), _sa(role)) for n in names for role in READERS_BY_PATH[read.path]}
    granted = {(b["secret"], b["member"]) for b in infra["access"]["secret_accessors"].values()}
    assert granted == expected
    assert set(infra["topology"]["secrets"]) == {secret for secret, _ in granted}


# --- topics


def test_topics_the_code_publishes_to_exist_and_only_its_publishers_may(
    infra: dict[str, Any],
) -> None:
    topology = load_topology()
    published = code_references.message_topics()
    assert published, "the github-builds example publishes build requests"
    for ref in published:
        assert topology.topic(str(ref.name)) is not None, f"{ref.where()}: topic {ref.name}"
    publishers = {(b["topic"], b["member"]) for b in infra["access"]["topic_publishers"].values()}
    sources = {s.topic for s in topology.sources}
    dead_letter = set(infra["topology"]["dead_letter_topics"])
    for topic in sources:
        assert (topic, _sa("webhook")) in publishers  # ingest
        assert (topic, _sa("admin")) in publishers  # resend
        assert (topic, _sa("worker")) in publishers  # replays
    for ref in published:
        assert (ref.name, _sa("worker")) in publishers  # handlers' messages
    assert {m for t, m in publishers if t in dead_letter} == {PUBSUB_AGENT}
    assert {m for _, m in publishers} == {_sa("webhook"), _sa("admin"), _sa("worker"), PUBSUB_AGENT}


def test_the_pubsub_agent_may_take_messages_from_every_dead_lettering_subscription(
    infra: dict[str, Any],
) -> None:
    topology = load_topology()
    expected = {s.name for s in topology.subscriptions if s.dead_letter_policy is not None}
    bindings = infra["access"]["subscription_subscribers"].values()
    assert {b["subscription"] for b in bindings} == expected
    assert {b["member"] for b in bindings} == {PUBSUB_AGENT}


# --- queues and jobs


def test_the_queues_the_code_uses_are_the_topologys(infra: dict[str, Any]) -> None:
    used = set(code_references.queue_constants().values())
    assert used == {q.name for q in load_topology().queues}
    assert set(infra["topology"]["queues"]) == used
    enqueuers = {(b["queue"], b["member"]) for b in infra["access"]["queue_enqueuers"].values()}
    assert ("jobs", _sa("cron")) in enqueuers
    assert ("replays", _sa("admin")) in enqueuers
    assert {q for q, m in enqueuers if m == _sa("worker")} == used
    assert {m for _, m in enqueuers} == {_sa("cron"), _sa("admin"), _sa("worker")}
    task_creators = {
        b["member"]
        for b in infra["access"]["account_roles"].values()
        if b["account"] == "tasks" and b["role"] == "roles/iam.serviceAccountUser"
    }
    assert task_creators == {m for _, m in enqueuers}


def test_the_scheduled_jobs_are_the_ones_the_worker_runs(infra: dict[str, Any]) -> None:
    topology = load_topology()
    runner = JobRunner(engine=None, topology=topology, tasks=None, relay=None)  # type: ignore[arg-type]
    assert (
        set(runner.job_names) == {j.name for j in topology.jobs} == set(infra["topology"]["jobs"])
    )


# --- who may call what


def test_only_the_webhook_function_is_public(infra: dict[str, Any]) -> None:
    invokers = {(b["service"], b["member"]) for b in infra["access"]["service_invokers"].values()}
    assert invokers == {
        ("webhook", "allUsers"),
        ("worker", _sa("push")),
        ("worker", _sa("tasks")),
        ("cron", _sa("scheduler")),
        ("admin", "user:ops@example.com"),
    }


def test_database_roles_are_limited_to_the_instance(infra: dict[str, Any]) -> None:
    roles = infra["access"]["project_roles"].values()
    for binding in roles:
        if binding["role"].startswith("roles/cloudsql."):
            assert "instances/hookyard-db" in binding["condition"]["expression"]
    assert {(b["role"], b["member"]) for b in roles if b["condition"] is None} == {
        ("roles/monitoring.viewer", _sa("admin")),
        *{
            (role, _sa(target))
            for role in ("roles/monitoring.metricWriter", "roles/cloudtrace.agent")
            for target in ("webhook", "cron", "admin", "worker")
        },
    }
