"""A webhook target's first request, in a fresh interpreter as a cold start would be, loads
the ingest path and nothing of the CLI or the database. The request is real: signed, and
published to a running local stack's broker through Pub/Sub's client library, as deployed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.postgres import TestServer
from tests.support.stack import TEST_SECRETS, free_port, running_stack

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_INGEST_ANYWHERE = (
    "rich", "pygments", "typer", "hookyard", "sqlalchemy", "pg8000", "alembic",
    "google.cloud.tasks", "google.cloud.tasks_v2", "google.cloud.secretmanager",
    "google.cloud.secretmanager_v1",
)  # fmt: skip

TELEMETRY_SDK = (
    "opentelemetry.sdk", "opentelemetry.exporter", "prometheus_client",
    "google.cloud.monitoring_v3", "google.cloud.trace_v2",
)  # fmt: skip

FIRST_REQUEST = """
import json, sys, time
import main
from flask import Request
from werkzeug.test import EnvironBuilder
from common.signatures.signing import sign_headers

body = json.dumps({"id": "evt_cold", "type": "payment_intent.succeeded",
                   "data": {"object": {"metadata": {"account_id": "acct_cold"}}}}).encode()
headers = sign_headers("stripe", body, sys.argv[1], now=int(time.time()))
headers["Content-Type"] = "application/json"
environ = EnvironBuilder(path="/webhooks/stripe", method="POST", data=body, headers=headers)
response = main.webhook(Request(environ.get_environ()))
print(json.dumps({"status": response.status_code, "modules": sorted(sys.modules)}))
"""


def _first_request(env: dict[str, str]) -> dict[str, Any]:
    """A signed Stripe webhook as the first request of a fresh interpreter."""
    secret = TEST_SECRETS["HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE"]
    result = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, secret],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return outcome


def test_first_webhook_request_loads_no_cli_database_or_terminal_libraries(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with running_stack(pg_server, database, tmp_path) as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
        env.update(TEST_SECRETS)
        env.update({
            "HOOKYARD_EMULATOR_URL": stack.url, "HOOKYARD_DATA_DIR": str(stack.settings.data_dir),
            "HOOKYARD_SECRETS": "env", "PUBSUB_EMULATOR_HOST": stack.pubsub_emulator_host,
        })  # fmt: skip
        outcome = _first_request(env)
    assert outcome["status"] == 202
    assert loaded(outcome["modules"], NOT_FOR_INGEST_ANYWHERE) == []


def test_first_gcp_webhook_request_loads_only_the_pubsub_client() -> None:
    """As deployed (gcp, secrets from the environment): the request verifies and publishes
    through google-cloud-pubsub (to an address where nothing answers, hence 503) and loads
    neither the database layer nor the Cloud Tasks or Secret Manager clients."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKYARD_", "PUBSUB_"))}
    env.update(TEST_SECRETS)
    env.update({
        "HOOKYARD_ENV": "gcp", "HOOKYARD_SECRETS": "env", "HOOKYARD_PUBLISH_TIMEOUT_S": "2",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
    })  # fmt: skip
    outcome = _first_request(env)
    assert loaded(outcome["modules"], NOT_FOR_INGEST_ANYWHERE) == []
    # No metrics or traces exporter configured: OpenTelemetry's SDK is never loaded.
    assert loaded(outcome["modules"], TELEMETRY_SDK) == []
    assert outcome["status"] == 503
    assert "google.pubsub_v1" in outcome["modules"]  # it did try to publish


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
