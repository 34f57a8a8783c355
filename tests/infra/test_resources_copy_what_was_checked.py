"""The provider resources only copy what the offline-evaluated modules rendered.

tests/infra/test_topology_module.py proves modules/topology renders the right arguments and
test_code_and_infra_agree.py that modules/access lists the right bindings; no provider can
run here, so this closes the gap by reading the resources themselves (python-hcl2 plus their
text): each resource iterates over the rendered map, uses every rendered field, and gives
each argument the field of the same name. A resource that drops a field (a retry policy
never set) or wires one to the wrong argument fails here.
"""

from __future__ import annotations

import re
from typing import Any

import hcl2
import pytest

from common.config import Settings
from tests.support.terraform import INFRA, evaluate

RENAMED = {
    "service_account_email": "oidc_service_account_email",
    "audience": "oidc_audience",
}
"""Arguments of nested `oidc_token` blocks, whose field names say which token they are."""

# (module file, resource type, resource name, the rendered output it iterates over)
COPIES = [
    ("messaging", "google_pubsub_subscription", "push", "google_push_subscriptions"),
    ("messaging", "google_pubsub_subscription", "pull", "google_pull_subscriptions"),
    ("tasks", "google_cloud_tasks_queue", "queue", "google_queues"),
    ("scheduler", "google_cloud_scheduler_job", "job", "google_scheduler_jobs"),
]
ROOT_WIRING = {
    "messaging": {
        "push_subscriptions": "google_push_subscriptions",
        "pull_subscriptions": "google_pull_subscriptions",
    },
    "tasks": {"queues": "google_queues"},
    "scheduler": {"jobs": "google_scheduler_jobs"},
}
"""Which of modules/topology's outputs the root module passes to each module's variable."""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    topology = ("modules/topology", {"topology_file": str(INFRA.parent / "common/topology.yaml")})
    return evaluate(tmp_path_factory.mktemp("render"), {"topology": topology})["topology"]


def _block(module: str, kind: str, name: str) -> str:
    """The resource's text, from its header to the closing brace in column 0."""
    text = (INFRA / "modules" / module / "main.tf").read_text(encoding="utf-8")
    match = re.search(rf'^resource "{kind}" "{name}" \{{\n(.*?)^\}}', text, re.S | re.M)
    assert match, f"modules/{module}: no resource {kind}.{name}"
    return match.group(1)


def _fields_used(block: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Top-level `each.value` fields used, and (argument, field) of each direct copy, dynamic
    blocks' `<block>.value.<field>` counted under the block's own field."""
    used = set(re.findall(r"each\.value\.(\w+)", block))
    copies = re.findall(r"^\s*(\w+)\s*=\s*each\.value\.(\w+)\s*$", block, re.M)
    for dynamic in re.findall(r'dynamic "(\w+)"', block):
        copies += [
            (arg, field)
            for arg, field in re.findall(
                rf"^\s*(\w+)\s*=\s*{dynamic}\.value\.(\w+)\s*$", block, re.M
            )
        ]
        copies += re.findall(
            rf"^\s*(\w+)\s*=\s*\w+\[{dynamic}\.value\.(\w+)\]\.id\s*$", block, re.M
        )
    copies += re.findall(r"^\s*(\w+)\s*=\s*\w+\.\w+\[each\.value\.(\w+)\]\.id\s*$", block, re.M)
    return used, copies


@pytest.mark.parametrize(("module", "kind", "name", "output"), COPIES)
def test_each_resource_copies_every_rendered_field_to_its_own_argument(
    rendered: dict[str, Any], module: str, kind: str, name: str, output: str
) -> None:
    block = _block(module, kind, name)
    assert re.search(r"^\s*for_each\s*=\s*var\.\w+\s*$", block, re.M), "iterates a variable"
    fields = {field for item in rendered[output].values() for field in item}
    assert fields, f"{output} is empty: nothing to compare"
    used, copies = _fields_used(block)
    assert used == fields, f"{kind}.{name} uses {sorted(used)}, rendered {sorted(fields)}"
    for argument, field in copies:
        if argument in RENAMED:
            assert field == RENAMED[argument], f"{argument} = {field}"
        else:
            assert field == argument, f"{kind}.{name}: {argument} is given {field}"


def test_the_root_passes_each_module_the_rendered_map_it_expects() -> None:
    root = hcl2.loads((INFRA / "main.tf").read_text(encoding="utf-8"))
    modules = {next(iter(block)).strip('"'): next(iter(block.values())) for block in root["module"]}
    for module, wiring in ROOT_WIRING.items():
        for variable, output in wiring.items():
            value = str(modules[module][variable])
            assert value.strip('"${}') == f"module.topology.{output}", (module, variable)


def test_every_setting_the_services_are_given_is_one_the_code_reads() -> None:
    text = (INFRA / "main.tf").read_text(encoding="utf-8")
    given = set(re.findall(r"^\s*(HOOKYARD_\w+)\s*=", text, re.M))
    services = (INFRA / "modules/services/main.tf").read_text(encoding="utf-8")
    read = set(re.findall(r'"(HOOKYARD_\w+)"', services))
    assert read <= given, f"services read settings the root does not give: {read - given}"
    known = {f"HOOKYARD_{name.upper()}" for name in Settings.model_fields}
    assert given <= known, f"not settings of common/config.py: {sorted(given - known)}"
    # What a target needs to verify its callers is given to that target.
    for target, needs in {
        "worker": {
            "HOOKYARD_WORKER_URL",
            "HOOKYARD_PUSH_SERVICE_ACCOUNT",
            "HOOKYARD_TASKS_SERVICE_ACCOUNT",
        },
        "cron": {"HOOKYARD_SCHEDULER_SERVICE_ACCOUNT", "HOOKYARD_CRON_AUDIENCE"},
        "admin": {
            "HOOKYARD_ADMIN_OPERATORS",
            "HOOKYARD_ADMIN_AUDIENCE",
            "HOOKYARD_CLOUD_SQL_INSTANCE",
        },
    }.items():
        assert needs <= _reads(services, target), target


def _reads(services: str, target: str) -> set[str]:
    """The HOOKYARD_* names in a target's `reads`, the shared lists expanded."""
    lists = {
        name: set(re.findall(r'"(HOOKYARD_\w+)"', body))
        for name, body in re.findall(r"^  (\w+) = \[\n?(.*?)\]", services, re.S | re.M)
    }
    match = re.search(
        rf"^    {target} = \{{\n      reads = (.*?)\n      ingress", services, re.S | re.M
    )
    assert match, f"no reads for {target}"
    expression = match.group(1)
    names = set(re.findall(r'"(HOOKYARD_\w+)"', expression))
    for shared in re.findall(r"local\.(\w+)", expression):
        names |= lists.get(shared, set())
    return names


def test_the_tree_has_one_resource_per_kind_it_claims() -> None:
    """Sanity of the reading above: hcl2 sees the same resources the regexes do."""
    for module, kind, name, _ in COPIES:
        parsed = hcl2.loads((INFRA / "modules" / module / "main.tf").read_text(encoding="utf-8"))
        names = {
            label.strip('"')
            for block in parsed.get("resource", [])
            for kind_label, body in block.items()
            if kind_label.strip('"') == kind
            for label in body
        }
        assert name in names, (module, kind, name)


def test_every_binding_modules_access_lists_is_created() -> None:
    outputs = hcl2.loads((INFRA / "modules/access/outputs.tf").read_text(encoding="utf-8"))
    listed = {next(iter(block)).strip('"') for block in outputs["output"]}
    iam = (INFRA / "modules/iam/main.tf").read_text(encoding="utf-8")
    created = set(re.findall(r"^\s*for_each\s*=\s*var\.access\.(\w+)\s*$", iam, re.M))
    services = (INFRA / "modules/services/main.tf").read_text(encoding="utf-8")
    assert re.search(r"^\s*for_each = var\.invokers\s*$", services, re.M)
    root = (INFRA / "main.tf").read_text(encoding="utf-8")
    assert re.search(r"^\s*invokers\s*=\s*module\.access\.service_invokers\s*$", root, re.M)
    assert created | {"service_invokers"} == listed


def _assigned(text: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", text, re.M)
    assert match, f"infra/main.tf does not set {name}"
    return match.group(1)


@pytest.mark.parametrize(
    ("caller_side", "verifier_side"),
    [
        # Push subscriptions' endpoint and audience, and what /pubsub and /tasks verify.
        ("worker_url", "HOOKYARD_WORKER_URL"),
        ("push_service_account", "HOOKYARD_PUSH_SERVICE_ACCOUNT"),
        # Scheduler's token, and what /cron verifies.
        ("cron_audience", "HOOKYARD_CRON_AUDIENCE"),
        ("scheduler_service_account", "HOOKYARD_SCHEDULER_SERVICE_ACCOUNT"),
    ],
)
def test_callers_present_the_identity_and_audience_the_code_verifies(
    caller_side: str, verifier_side: str
) -> None:
    """The token Pub/Sub or Scheduler presents is rendered by modules/topology from the
    first name; the service checks the second: both come from one expression."""
    text = (INFRA / "main.tf").read_text(encoding="utf-8")
    assert _assigned(text, caller_side) == _assigned(text, verifier_side)


def test_the_task_identity_the_code_attaches_is_the_one_the_worker_accepts() -> None:
    """Cloud Tasks tokens are set by the code from HOOKYARD_TASKS_SERVICE_ACCOUNT (cron,
    admin, worker create tasks) and verified by the worker against the same setting."""
    services = (INFRA / "modules/services/main.tf").read_text(encoding="utf-8")
    for target in ("cron", "admin", "worker"):
        assert {"HOOKYARD_TASKS_SERVICE_ACCOUNT", "HOOKYARD_WORKER_URL"} <= _reads(services, target)
    text = (INFRA / "main.tf").read_text(encoding="utf-8")
    assert _assigned(text, "HOOKYARD_TASKS_SERVICE_ACCOUNT") == 'module.identities.emails["tasks"]'


def test_every_variable_and_output_is_described() -> None:
    undescribed = []
    for path in sorted(INFRA.rglob("*.tf")):
        parsed = hcl2.loads(path.read_text(encoding="utf-8"))
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                for label, body in block.items():
                    if not str(body.get("description", "")).strip('"'):
                        undescribed.append(f"{path.relative_to(INFRA)}: {kind} {label}")
    assert undescribed == []
