"""Every shipped source over a real socket: signed is 202, forged is 401, quirks answered."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from common.topology import get_topology
from hookyard.cli import app
from hookyard.sender import sender_request
from hookyard.stack import LocalStack
from tests.support.cli_runner import Runner
from tests.support.postgres import TestServer
from tests.support.samples import Sample, samples
from tests.support.stack import (
    ADMIN_TOKEN,
    SOURCE_SECRETS,
    admin,
    module_stack,
    wait_for,
)

SAMPLES = {s.source: s for s in samples("x")}


@pytest.fixture(scope="module")
def stack(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("sources")) as running:
        yield running


def post(
    stack: LocalStack, sample: Sample, secret: str | None = None, **overrides: str
) -> httpx.Response:
    spec = get_topology().source(sample.source)
    assert spec is not None
    env_name = "HOOKYARD_SECRET_" + spec.secret.upper().replace("-", "_")
    url, headers = sender_request(
        spec,
        sample.body,
        secret or SOURCE_SECRETS[env_name],
        now=int(time.time()),
        url=f"{stack.url}/webhooks/{sample.source}",
        event_id=sample.event_id,
        event_type=sample.event_type,
        media_type=sample.media_type,
    )
    headers.update(overrides)
    return httpx.post(url, content=sample.body, headers=headers, timeout=60)


def test_every_shipped_source_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(s.name for s in get_topology().sources)


@pytest.mark.parametrize("source", sorted(SAMPLES))
def test_signed_delivery_is_accepted(stack: LocalStack, source: str) -> None:
    sample = next(s for s in samples(uuid.uuid4().hex[:10]) if s.source == source)
    response = post(stack, sample)
    assert response.status_code == 202, response.text
    if source == "twilio":
        assert response.headers["content-type"].startswith("text/xml")
        assert "<Response/>" in response.text
    else:
        assert response.json() == {
            "status": "accepted", "source": source, "event_id": sample.expected_id,
        }  # fmt: skip


@pytest.mark.parametrize("source", sorted(SAMPLES))
def test_every_accepted_event_is_kept_in_the_event_log(stack: LocalStack, source: str) -> None:
    """Accepted means kept: before the event-log subscription, five of the six sources
    published into a topic whose only subscription filtered them out."""
    sample = next(s for s in samples(uuid.uuid4().hex[:10]) if s.source == source)
    assert post(stack, sample).status_code == 202
    with admin(httpx.Client(base_url=stack.url, timeout=60)) as client:

        def logged() -> list[dict[str, object]]:
            page = client.get("/admin/events", params={"source": source, "limit": 500}).json()
            return [
                item for item in page["items"]
                if item["event_id"] == sample.expected_id
                and item["outcome"] not in {"pending", "failed"}
            ]  # fmt: skip

        [event] = wait_for(logged, timeout=120)
    assert event["body_sha256"] == hashlib.sha256(sample.body).hexdigest()
    assert event["body_bytes"] == len(sample.body)
    assert event["event_type"]  # every sample names its type, in a header or the body
    # Each handler that takes the event reports on it; an event none takes is `recorded`.
    takers = [h.name for h in get_topology().handlers if h.takes(source, event["event_type"])]
    assert [h["handler"] for h in event["handlers"]] == takers
    if source == "stripe":  # its customer.created changes nothing in the ledger
        assert event["outcome"] == "ignored"
    elif not takers:
        assert event["outcome"] == "recorded"
    listed = Runner().invoke(
        app, ["events", "list", "--source", source, "--json", "--limit", "500",
              "--url", stack.url, "--token", ADMIN_TOKEN],
    )  # fmt: skip
    assert listed.exit_code == 0, listed.stderr
    assert sample.expected_id in {e["event_id"] for e in json.loads(listed.stdout)}


@pytest.mark.parametrize("source", sorted(SAMPLES))
def test_forged_delivery_is_401(stack: LocalStack, source: str) -> None:
    forged_secret = "whsec_" + "A" * 43 + "=" if source in {"standard"} else "not-the-secret"
    response = post(stack, SAMPLES[source], secret=forged_secret)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "signature mismatch"


def test_wrong_media_type_is_415(stack: LocalStack) -> None:
    response = post(stack, SAMPLES["stripe"], **{"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["field"] == "Content-Type"


def test_slack_url_verification_is_answered_not_published(stack: LocalStack) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "t", "challenge": challenge, "type": "url_verification"}).encode()
    sample = Sample("slack", body, "application/json", "", "")
    assert stack.broker is not None
    before = stack.broker.pending_count()
    response = post(stack, sample)
    assert response.status_code == 200
    assert response.json() == {"challenge": challenge}
    assert stack.broker.pending_count() == before


def test_slack_slash_command_form_uses_trigger_id(stack: LocalStack) -> None:
    body = b"command=%2Fweather&text=94070&trigger_id=13345224609.738474920.8088930838d88f008e0"
    response = post(stack, Sample("slack", body, "application/x-www-form-urlencoded", "", ""))
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == "13345224609.738474920.8088930838d88f008e0"


def test_missing_event_id_names_the_field(stack: LocalStack) -> None:
    body = json.dumps({"type": "event_callback", "event": {"type": "message"}}).encode()
    response = post(stack, Sample("slack", body, "application/json", "", ""))
    assert response.status_code == 400
    problem = response.json()
    assert problem["field"] == "JSON field /event_id"
    assert "trigger_id" in problem["detail"]


def test_twilio_json_body_bound_through_the_url(stack: LocalStack) -> None:
    body = json.dumps({"sid": "SMjson1", "status": "sent"}).encode()
    response = post(stack, Sample("twilio", body, "application/json", "", ""))
    assert response.status_code == 202, response.text
