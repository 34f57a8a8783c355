"""Every operation the live stack documents refuses what it must, table-driven over the stack's
own `/openapi.json`: a new route is in the table the moment it is documented.

By surface: the admin API and the service surfaces (`/pubsub`, `/tasks`, `/cron`) answer 401
to no credential, a wrong one, a token the stack signed for another audience and a token of
another surface's caller, and 403 to a cross-site browser request even when it carries the
right credential. Webhooks are signed, not token-authenticated: no signature and a signature
made with another source's secret are 401. The emulators' Cloud Tasks API takes no
credentials (as Google's emulators) but refuses browsers, in Google's error shape, as
documented. Health probes, the document itself, the token certificates, the local stack's
Prometheus page (counts with bounded labels, as a scraper expects it) and the console's pages
(which hold no data: their script calls the admin API with the operator's token) are public,
and no other operation may be. Every refusal is problem JSON with a documented status, never
echoes the credential, and leaves the database as it was.

The stack runs in its production shape (each target its own process behind the front door),
with its scheduler off so that nothing but these requests could write to the database.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.config import Settings
from common.envelope import build_envelope
from common.errors import ConfigError
from common.oidc import TokenMinter
from common.secrets import env_var_for
from common.service_identity import LOCAL_CALLERS, Surface, load_local_signer, local_issuer
from common.signatures import sign_headers
from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import ADMIN_TOKEN, TEST_SECRETS, service_token, stripe_event

pytestmark = pytest.mark.timeout(600)

PROBLEM = "application/problem+json"
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
ANOTHER_AUDIENCE = "https://another-service.example"
PUBLIC = {
    ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/openapi.json"),
    ("GET", "/emulator/oauth2/v1/certs"), ("GET", "/console"), ("GET", "/console/static/{asset}"),
    ("GET", "/metrics"),
}  # fmt: skip
SERVICE_SURFACES: dict[str, Surface] = {"pubsub": "pubsub", "tasks": "tasks", "cron": "cron"}
PATH_VALUES = {
    "account_id": "acct_1", "dead_letter_id": "1", "replay_id": "1", "source": "stripe",
    "event_id": "evt_1", "project": "local-project", "location": "us-central1", "queue": "jobs",
}  # fmt: skip
"""Valid-looking values for path parameters without an enum (an enum's first value is used)."""
# A JWT's shape, its header nested 3,000 arrays deep: still under the verifier's length cap.
DEEP_JWT = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode() + ".e30.c2lnbmF0dXJl"
Shape = Literal["problem", "google"]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path: str
    tags: tuple[str, ...]
    surface: str
    spec: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Attempt:
    case: str
    headers: dict[str, str]
    status: int
    shape: Shape = "problem"
    secrets: tuple[str, ...] = ()
    """What the response must not echo: the credential or signature sent, the key used."""


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    database = pg_server.create_database()
    secrets = pytest.MonkeyPatch()
    for name, value in TEST_SECRETS.items():
        secrets.setenv(name, value)
    settings = Settings(
        database_url=pg_server.url_for(database), port=0, pubsub_port=0,
        data_dir=tmp_path_factory.mktemp("refuses") / "data", dev_processes=True,
        scheduler_enabled=False,
    )  # fmt: skip
    stack = LocalStack(settings)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        secrets.undo()
        pg_server.drop_database(database)


@pytest.fixture(scope="module")
def document(live: LocalStack) -> dict[str, Any]:
    response = httpx.get(f"{live.url}/openapi.json", timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def surface_of(path: str) -> str:
    """Which kind of caller an operation serves, by its first path segment (how the front
    door routes)."""
    first = path.split("/")[1]
    if first == "webhooks":
        return "webhook"
    if first == "admin":
        return "admin"
    if first in SERVICE_SURFACES:
        return first
    if first == "v2":
        return "emulator-api"
    return "public"


def operations(document: dict[str, Any]) -> list[Operation]:
    table = []
    for template, item in document["paths"].items():
        for method, spec in item.items():
            if method == "parameters":
                continue
            parameters = [*item.get("parameters", []), *spec.get("parameters", [])]
            table.append(
                Operation(
                    method.upper(),
                    template,
                    _concrete(template, parameters, document),
                    tuple(spec.get("tags", ())),
                    surface_of(template),
                    spec,
                )
            )
    return table


def _concrete(template: str, parameters: list[dict[str, Any]], document: dict[str, Any]) -> str:
    shared = document.get("components", {}).get("parameters", {})
    path = template
    for declared in parameters:
        parameter = shared[declared["$ref"].rsplit("/", 1)[-1]] if "$ref" in declared else declared
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        enum = parameter["schema"].get("enum")
        value = enum[0] if enum else PATH_VALUES.get(name)
        assert value is not None, f"no valid-looking value for path parameter {name!r}"
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"unfilled path parameter in {template}"
    return path


def test_the_table_covers_every_documented_operation(document: dict[str, Any]) -> None:
    table = operations(document)
    assert table, "the document lists no operation"
    declared_tags = {tag["name"] for tag in document["tags"]}
    assert {tag for op in table for tag in op.tags} == declared_tags
    guarded = {tag for op in table if op.surface != "public" for tag in op.tags}
    public_tags = {"health", "console"}  # the console's pages hold no data; its API calls do
    assert guarded == declared_tags - public_tags, "every tag but the public ones has refusals"
    public = {(op.method, op.template) for op in table if op.surface == "public"}
    assert public == PUBLIC, "an operation open to anyone must be added here on purpose"
    for op in table:
        declared = op.spec.get("security")
        if op.surface == "admin":
            assert declared == [{"bearer": []}], op
        elif op.surface in SERVICE_SURFACES:
            assert declared == [{"oidc": []}], op
        else:
            assert not declared, op


def test_every_operation_refuses_what_it_must(live: LocalStack, document: dict[str, Any]) -> None:
    assert live.engine is not None
    before = _database_state(live.engine)
    failures: list[str] = []
    tried = 0
    with httpx.Client(base_url=live.url, timeout=60) as client:
        for op in operations(document):
            body, headers = _request(live, op)
            for attempt in _attempts(live, op, body):
                tried += 1
                response = client.request(
                    op.method, op.path, content=body, headers={**headers, **attempt.headers}
                )
                problem = _judge(op, attempt, response)
                if problem:
                    failures.append(f"{op.method} {op.path} [{attempt.case}]: {problem}")
    assert tried > 0
    after = _database_state(live.engine)
    changed = sorted(table for table, digest in after.items() if before.get(table) != digest)
    report = [f"{len(failures)} of {tried} refusals wrong:", *failures]
    if changed:
        report.append(f"and refused calls changed these tables: {', '.join(changed)}")
    wrong = len(failures) + len(changed)
    assert wrong == 0, "\n".join(report)


def _judge(op: Operation, attempt: Attempt, response: httpx.Response) -> str | None:
    """What is wrong with the answer to one attempt, or None."""
    if response.status_code != attempt.status:
        return f"expected {attempt.status}, got {response.status_code}: {response.text[:300]}"
    if str(attempt.status) not in op.spec["responses"]:
        return f"{attempt.status} is not among the documented responses"
    for secret in attempt.secrets:
        if secret in response.text:
            return "the credential is echoed in the body"
    content_type = response.headers.get("content-type", "")
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]}"
    if attempt.shape == "problem":
        if not content_type.startswith(PROBLEM) or body.get("status") != attempt.status:
            return f"not problem JSON ({content_type}): {response.text[:200]}"
    elif body.get("error", {}).get("code") != attempt.status:
        return f"not Google's error shape: {response.text[:200]}"
    return None


def _attempts(live: LocalStack, op: Operation, body: bytes | None) -> list[Attempt]:
    if op.surface == "webhook":
        return _webhook_attempts(live, op, body or b"")
    if op.surface == "emulator-api":
        # Anonymous by design (loopback callers only); a web page is still refused.
        return [Attempt("cross-site browser", dict(CROSS_SITE), 403, "google")]
    if op.surface == "public":
        return []
    signer, _ = load_local_signer(live.secrets_dir)
    minter = TokenMinter(signer, local_issuer(live.url))
    common = [
        Attempt("no credential", {}, 401),
        _bearer("garbage bearer", "not-a-token", 401),
        _bearer("a JWT-shaped token nested 3,000 deep", DEEP_JWT, 401),
    ]
    if op.surface == "admin":
        others = [
            _bearer("a wrong admin token", ADMIN_TOKEN + "-but-not-quite", 401),
            _bearer(
                "a stack-signed token for another audience",
                minter.token(LOCAL_CALLERS["pubsub"], ANOTHER_AUDIENCE),
                401,
            ),
            *[
                _bearer(f"the {s} caller's token", service_token(live, s), 401)
                for s in SERVICE_SURFACES.values()
            ],
            _bearer("cross-site browser with the admin token", ADMIN_TOKEN, 403, CROSS_SITE),
        ]
        return common + others
    surface = SERVICE_SURFACES[op.surface]
    own = service_token(live, surface)
    others = [
        _bearer("the admin token", ADMIN_TOKEN, 401),
        _bearer(
            "its own caller's token for another audience",
            minter.token(LOCAL_CALLERS[surface], ANOTHER_AUDIENCE),
            401,
        ),
        *[
            _bearer(f"the {s} caller's token", service_token(live, s), 401)
            for s in SERVICE_SURFACES.values()
            if s != surface
        ],
        _bearer("cross-site browser with its own caller's token", own, 403, CROSS_SITE),
    ]
    return common + others


def _bearer(case: str, token: str, status: int, extra: dict[str, str] | None = None) -> Attempt:
    return Attempt(case, {"Authorization": f"Bearer {token}", **(extra or {})}, status,
                   secrets=(token,))  # fmt: skip


def _webhook_attempts(live: LocalStack, op: Operation, body: bytes) -> list[Attempt]:
    source = live.topology.source(op.path.rsplit("/", 1)[-1])
    assert source is not None, op.path
    own = TEST_SECRETS[env_var_for(source.secret)]
    signed_with: dict[str, str] | None = None
    for other in live.topology.sources:
        secret = TEST_SECRETS[env_var_for(other.secret)]
        if secret == own:
            continue
        try:
            headers = sign_headers(
                source.scheme, body, secret, now=int(time.time()), event_id="evt_refused",
                url=live.url + op.path,
            )  # fmt: skip
        except ConfigError:
            continue  # that secret is no key for this scheme (Standard Webhooks wants base64)
        signed_with = {**headers, "_secret": secret}
        break
    assert signed_with is not None, f"no other source's secret can sign for {source.name}"
    secret = signed_with.pop("_secret")
    return [
        Attempt("no signature", {}, 401, secrets=(own,)),
        Attempt(
            "signed with another source's secret",
            signed_with,
            401,
            secrets=(own, secret, *signed_with.values()),
        ),
    ]


def _request(live: LocalStack, op: Operation) -> tuple[bytes | None, dict[str, str]]:
    """A body and headers the operation would act on if the caller were let in, so a refusal
    that let something through would show in the database."""
    if "requestBody" not in op.spec and op.method == "GET":
        return None, {}
    content = op.spec.get("requestBody", {}).get("content", {"application/json": {}})
    media = next(iter(content))
    extra = {
        "cronTick": {"X-CloudScheduler-ScheduleTime": "2031-01-01T00:00:00Z"},
        "runTask": {"X-CloudTasks-TaskName": "refused-1", "X-CloudTasks-TaskRetryCount": "0"},
    }.get(op.spec.get("operationId", ""), {})
    headers = {"Content-Type": media, **extra}
    if op.surface == "webhook":
        if media == "application/json":
            event = stripe_event("evt_refused", "payment_intent.succeeded", "acct_1",
                                 amount_received=10**6)  # fmt: skip
            return event, headers
        return urlencode({"MessageSid": "SM_refused", "MessageStatus": "sent"}).encode(), headers
    return json.dumps(_json_body(live, op)).encode(), headers


def _json_body(live: LocalStack, op: Operation) -> Any:
    reason = {"reason": "refused callers must change nothing"}
    match op.spec.get("operationId"):
        case "putAccount":
            return {"currency": "usd"}
        case "replayDeadLetters" | "discardDeadLetters":
            return {"filter": {"source": "stripe"}, **reason}
        case "pushDelivery":
            data = stripe_event("evt_refused", "payment_intent.succeeded", "acct_1",
                                amount_received=10**6)  # fmt: skip
            return build_envelope(
                project="local-project", subscription=op.path.rsplit("/", 1)[-1],
                message_id="refused-1", data=data, publish_time=datetime.now(UTC),
                attributes={"source": "stripe", "event_id": "evt_refused",
                            "event_type": "payment_intent.succeeded"},
            )  # fmt: skip
        case "runTask":
            return {"outbox_id": 1}
        case "cloudTasksCreateTask":
            return {"task": {"httpRequest": {"url": f"{live.url}/tasks/jobs"}}}
    return reason


def _database_state(engine: Engine) -> dict[str, str]:
    """A digest of every row of every table the stack writes, by table."""
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname IN ('public', 'emulator') ORDER BY 1"
            )
        ).scalars()
        return {
            table: conn.execute(
                sa.text(
                    f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                    f" FROM {table} AS t"
                )
            ).scalar_one()
            for table in list(tables)
        }
