"""/cron in GCP mode: only the scheduler's OIDC token gets in, verified by the one
`OidcVerifier` against certificates served over a real socket (a stand-in for Google's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from common.messaging.tasks import TaskRequest
from common.oidc import GOOGLE_ISSUERS, OidcVerifier
from common.topology import get_topology
from functions.cron import CronIngest
from hookyard.server import create_app
from tests.support.oidc import FakeGoogle, fake_google

AUDIENCE = "https://cron.example.run.app"
SCHEDULER = "scheduler@proj.iam.gserviceaccount.com"


class _Recorder:
    def __init__(self) -> None:
        self.names: list[str | None] = []

    def enqueue(self, task: TaskRequest) -> bool:
        self.names.append(task.name)
        return True


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    with fake_google(tmp_path / "google") as running:
        yield running


@pytest.fixture
def cron_url(google: FakeGoogle) -> Iterator[tuple[str, _Recorder]]:
    recorder = _Recorder()
    verifier = OidcVerifier(google.certs_url, GOOGLE_ISSUERS, AUDIENCE, {SCHEDULER})
    ingest = CronIngest(get_topology(), lambda: recorder, verifier)
    app = make_server("127.0.0.1", 0, create_app({"cron": ingest.handle}), threaded=True)
    thread = threading.Thread(target=app.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{app.server_port}", recorder
    finally:
        app.shutdown()
        app.server_close()
        thread.join(timeout=60)


def _token(google: FakeGoogle, **overrides: Any) -> str:
    return google.token(AUDIENCE, SCHEDULER, **overrides)


def _post(url: str, token: str | None) -> httpx.Response:
    headers = {"X-CloudScheduler-ScheduleTime": "2026-11-23T00:05:00Z"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/cron/reconcile", headers=headers, timeout=60)


def test_the_schedulers_token_is_accepted(
    cron_url: tuple[str, _Recorder], google: FakeGoogle
) -> None:
    url, recorder = cron_url
    response = _post(url, _token(google))
    assert response.status_code == 202, response.text
    assert recorder.names == ["reconcile-20261123T000500Z"]


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("wrong audience", {"aud": "https://elsewhere.example"}),
        ("wrong account", {"email": "intruder@proj.iam.gserviceaccount.com"}),
        ("unverified email", {"email_verified": False}),
        ("expired", {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
        ("wrong issuer", {"iss": "https://evil.example"}),
    ],
)
def test_other_tokens_are_refused(
    cron_url: tuple[str, _Recorder], google: FakeGoogle, case: str, overrides: dict[str, Any]
) -> None:
    url, recorder = cron_url
    claims = {"aud": AUDIENCE, "email": SCHEDULER, **overrides}
    audience, email = claims.pop("aud"), claims.pop("email")
    response = _post(url, google.token(audience, email, **claims))
    assert response.status_code == 401, case
    assert recorder.names == []


def test_missing_or_forged_tokens_are_refused(
    cron_url: tuple[str, _Recorder], google: FakeGoogle, tmp_path: Path
) -> None:
    url, recorder = cron_url
    assert _post(url, None).status_code == 401
    never_google = FakeGoogle(tmp_path / "never-google")  # a key Google never published
    assert _post(url, never_google.token(AUDIENCE, SCHEDULER)).status_code == 401
    assert recorder.names == []
