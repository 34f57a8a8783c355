"""`/admin/*` takes an allowed operator's Google ID token, or the admin token.

Google is `tests.support.oidc.fake_google`: a real certificates endpoint and a signer. The
stack and the deployed `admin` target are configured as an operator would configure them:
HOOKYARD_ADMIN_OPERATORS, HOOKYARD_ADMIN_AUDIENCE, HOOKYARD_OIDC_CERTS_URL.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import main
from common.db.engine import set_engine
from hookyard.stack import LocalStack
from tests.support.oidc import FakeGoogle, fake_google
from tests.support.postgres import TestServer
from tests.support.stack import ADMIN_TOKEN, TEST_SECRETS, module_stack
from tests.support.wsgi import rebuild_targets, serving, target_app

OPERATOR = "ops@example.com"
AUDIENCE = "https://admin.hookyard.example"
GENEROUS_S = 60.0


@pytest.fixture(scope="module")
def google(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGoogle]:
    with fake_google(tmp_path_factory.mktemp("google")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    pg_server: TestServer, google: FakeGoogle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    patch = pytest.MonkeyPatch()
    patch.setenv("HOOKYARD_ADMIN_OPERATORS", json.dumps([OPERATOR, "other@example.com"]))
    patch.setenv("HOOKYARD_ADMIN_AUDIENCE", AUDIENCE)
    patch.setenv("HOOKYARD_OIDC_CERTS_URL", google.certs_url)
    try:
        with module_stack(pg_server, tmp_path_factory.mktemp("stack")) as running:
            yield running
    finally:
        patch.undo()


def discard(url: str, token: str, **headers: str) -> httpx.Response:
    """A mutating call: it writes an audit row whatever it selects."""
    return httpx.post(
        f"{url}/admin/dead-letters/discard",
        json={"filter": {"source": "nothing-here"}, "reason": "operator test"},
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=GENEROUS_S,
    )


def audit_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT actor, action FROM operator_actions ORDER BY id"))
        return [(r.actor, r.action) for r in rows]


def test_an_allowed_operator_is_the_audit_actor(stack: LocalStack, google: FakeGoogle) -> None:
    assert stack.engine is not None
    before = audit_rows(stack.engine)
    token = google.token(AUDIENCE, OPERATOR)

    stats = httpx.get(f"{stack.url}/admin/stats", headers={"Authorization": f"Bearer {token}"},
                      timeout=GENEROUS_S)  # fmt: skip
    assert stats.status_code == 200, stats.text
    # The verified email is the actor, whatever the operator header claims.
    response = discard(stack.url, token, **{"X-Hookyard-Operator": "someone-else"})

    assert response.status_code == 200, response.text
    assert response.json() == {"discarded": 0}
    assert audit_rows(stack.engine) == [*before, (OPERATOR, "discard")]


def test_the_admin_token_still_works(stack: LocalStack) -> None:
    assert stack.engine is not None
    before = audit_rows(stack.engine)

    response = discard(stack.url, ADMIN_TOKEN, **{"X-Hookyard-Operator": "alice"})

    assert response.status_code == 200, response.text
    assert audit_rows(stack.engine) == [*before, ("alice", "discard")]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(google: FakeGoogle) -> str:
    claims = json.loads(base64.urlsafe_b64decode(google.token(AUDIENCE, OPERATOR).split(".")[1]
                                                 + "=="))  # fmt: skip
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _foreign_key(google: FakeGoogle, tmp_path: Path) -> str:
    """Well-formed and Google-shaped, signed by a key Google does not publish."""
    with fake_google(tmp_path / "forger") as forger:
        return forger.token(AUDIENCE, OPERATOR)


NOW = int(time.time())
REFUSED: dict[str, Callable[[FakeGoogle, Path], str]] = {
    "wrong audience": lambda g, _: g.token("https://elsewhere.example", OPERATOR),
    "expired": lambda g, _: g.token(AUDIENCE, OPERATOR, iat=NOW - 7200, exp=NOW - 3600),
    "unverified email": lambda g, _: g.token(AUDIENCE, OPERATOR, email_verified=False),
    "email not listed": lambda g, _: g.token(AUDIENCE, "intruder@example.com"),
    "another issuer": lambda g, _: g.token(AUDIENCE, OPERATOR, iss="https://issuer.example"),
    "garbage jwt": lambda g, _: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2lnbmF0dXJl",
    "alg none": lambda g, _: _alg_none(g),
    "unpublished key": _foreign_key,
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_token_that_is_not_an_allowed_operators_is_401_and_leaves_no_trace(
    stack: LocalStack, google: FakeGoogle, tmp_path: Path, case: str
) -> None:
    assert stack.engine is not None
    before = audit_rows(stack.engine)

    response = discard(stack.url, REFUSED[case](google, tmp_path))

    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == 401
    assert audit_rows(stack.engine) == before


# -- the deployed target, in gcp mode and unconfigured -----------------------------------------


@pytest.fixture
def admin_target(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Callable[[dict[str, str]], None]]]:
    """main.py's `admin` target on a socket, and how to set its environment (read on its
    first request)."""
    set_engine(engine)

    def configure(env: dict[str, str]) -> None:
        # The module's stack keeps its operators in the environment while it runs.
        for name in ("HOOKYARD_ADMIN_OPERATORS", "HOOKYARD_ADMIN_AUDIENCE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        rebuild_targets()

    try:
        with serving(target_app("admin", main.admin)) as url:
            yield url, configure
    finally:
        rebuild_targets()
        set_engine(None)


def test_the_gcp_admin_target_takes_operators_tokens(
    admin_target: tuple[str, Callable[[dict[str, str]], None]],
    google: FakeGoogle,
    engine: Engine,
) -> None:
    url, configure = admin_target
    configure({
        "HOOKYARD_ENV": "gcp", "HOOKYARD_SECRETS": "env",
        "HOOKYARD_SECRET_ADMIN_TOKEN": TEST_SECRETS["HOOKYARD_SECRET_ADMIN_TOKEN"],
        "HOOKYARD_ADMIN_OPERATORS": json.dumps([OPERATOR]),
        "HOOKYARD_ADMIN_AUDIENCE": AUDIENCE, "HOOKYARD_OIDC_CERTS_URL": google.certs_url,
    })  # fmt: skip

    assert discard(url, google.token(AUDIENCE, OPERATOR)).status_code == 200
    assert discard(url, google.token(AUDIENCE, "intruder@example.com")).status_code == 401
    assert discard(url, ADMIN_TOKEN, **{"X-Hookyard-Operator": "bob"}).status_code == 200
    assert audit_rows(engine) == [(OPERATOR, "discard"), ("bob", "discard")]


@pytest.mark.parametrize(
    "env",
    [{}, {"HOOKYARD_ADMIN_OPERATORS": json.dumps([OPERATOR])}],
    ids=["no operators", "no audience"],
)
def test_without_operators_configured_id_tokens_are_refused_and_the_admin_token_works(
    admin_target: tuple[str, Callable[[dict[str, str]], None]],
    google: FakeGoogle,
    engine: Engine,
    env: dict[str, str],
) -> None:
    url, configure = admin_target
    configure({"HOOKYARD_OIDC_CERTS_URL": google.certs_url, **env})

    refused = discard(url, google.token(AUDIENCE, OPERATOR))
    assert refused.status_code == 401
    assert "ID tokens are not accepted" in refused.json()["detail"]
    assert discard(url, ADMIN_TOKEN).status_code == 200
    assert audit_rows(engine) == [("unknown", "discard")]
