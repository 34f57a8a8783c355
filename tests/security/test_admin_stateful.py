"""Schemathesis drives the admin API as an operator would, following the document's links.

The state machine mixes schemathesis' own steps (any admin operation, with generated or
linked arguments: a listed dead letter is fetched, replayed or discarded, a replay is
watched or cancelled, an account's entries and events are read) with two steps of the
outside world: Stripe sends a signed payment for one of a few accounts, and an operator
creates one of those accounts. Payments for accounts that do not exist yet become dead
letters; once the account exists a replay applies them.

Every response must be documented and conform (schemathesis' checks: never a 5xx). After
all scenarios, once the stack is quiet, nothing may be lost or applied twice: every payment
Stripe got a 202 for is applied or a dead letter, and each account's balance is the sum of
the payments its ledger applied.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.specs.openapi.checks import ignored_auth
from sqlalchemy.engine import Engine

from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import ADMIN_TOKEN, module_stack, signed_stripe, stripe_event, wait_for

pytestmark = pytest.mark.timeout(600)

ACCOUNTS = ("acct_operator_1", "acct_operator_2", "acct_operator_3")
SCENARIOS = 30
STEPS = 15
SEEDED = 6
"""Dead letters waiting before the first scenario, so that listing finds some at once."""


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("stateful")) as running:
        yield running


SENT: dict[str, tuple[str, int]] = {}
"""The payments Stripe was answered 202 for: event id → (account, amount)."""


def send_payment(stack: LocalStack, account: str, amount: int) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
    response = httpx.post(
        f"{stack.url}/webhooks/stripe", content=body, headers=signed_stripe(body), timeout=60
    )
    assert response.status_code == 202, response.text
    SENT[event_id] = (account, amount)


def test_operator_workflows_answer_no_5xx_and_lose_nothing(live: LocalStack) -> None:
    assert live.engine is not None
    for n in range(SEEDED):
        send_payment(live, ACCOUNTS[n % len(ACCOUNTS)], 100 + n)
    wait_for(lambda: _dead_letters(live.engine) >= SEEDED)
    document = httpx.get(f"{live.url}/openapi.json", timeout=60).json()
    # The operator's step from an event to its account: Stripe-shaped, so the test's own.
    event = document["paths"]["/admin/events/{source}/{event_id}"]["get"]
    event["responses"]["200"]["links"]["CreateTheAccount"] = {
        "operationId": "putAccount",
        "parameters": {"account_id": "$response.body#/payload/data/object/metadata/account_id"},
        "requestBody": {"currency": "usd"},
    }
    schema = schemathesis_admin_schema(document, live.url)
    workflow: Any = schema.as_state_machine()

    class Operator(workflow):  # type: ignore[misc, valid-type]
        """Schemathesis' generated and linked steps, plus the operator's story told plainly,
        every call of which goes through the same checks."""

        def operator(self, method: str, path: str, **parts: Any) -> Any:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **parts.pop("headers", {})}
            case = schema[path][method].Case(headers=headers, **parts)
            response = case.call()
            self.validate_response(response, case)
            return response

        @rule(account=st.sampled_from(ACCOUNTS), amount=st.integers(1, 10_000))
        def stripe_sends_a_payment(self, account: str, amount: int) -> None:
            send_payment(live, account, amount)

        @rule(account=st.sampled_from(ACCOUNTS))
        def operator_creates_the_account(self, account: str) -> None:
            path = {"account_id": account}
            created = self.operator(
                "PUT", "/admin/accounts/{account_id}", path_parameters=path,
                body={"currency": "usd"}, headers={"X-Hookyard-Operator": "ops"},
            )  # fmt: skip
            assert created.status_code in (200, 201), created.text
            self.operator("GET", "/admin/accounts/{account_id}", path_parameters=path)
            self.operator("GET", "/admin/accounts/{account_id}/entries", path_parameters=path)

        @rule(dry_run=st.booleans())
        def operator_replays_what_is_pending(self, dry_run: bool) -> None:
            body = {"filter": {"subscription": "ledger"}, "reason": "accounts created",
                    "dry_run": dry_run}  # fmt: skip
            started = self.operator("POST", "/admin/dead-letters/replay", body=body)
            assert started.status_code == (200 if dry_run else 202), started.text
            if not dry_run:
                replay = {"replay_id": str(started.json()["replay_id"])}
                self.operator("GET", "/admin/replays/{replay_id}", path_parameters=replay)

        @rule()
        def operator_discards_the_oldest(self) -> None:
            listed = self.operator(
                "GET", "/admin/dead-letters", query={"state": "pending", "limit": 1}
            )
            for item in listed.json()["items"]:
                path = {"dead_letter_id": str(item["id"])}
                self.operator("GET", "/admin/dead-letters/{dead_letter_id}", path_parameters=path)
                body = {"ids": [item["id"]], "reason": "not ours"}
                discarded = self.operator("POST", "/admin/dead-letters/discard", body=body)
                assert discarded.json()["discarded"] in (0, 1)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            # The token is fixed configuration here; every route's refusals are checked by
            # test_every_route_refuses.
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[ignored_auth],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Operator.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
    )

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not _unsettled(live.engine), timeout=120, interval=0.2)
    assert _unsettled(live.engine) == [], "accepted payments were lost"
    _assert_nothing_lost_or_applied_twice(live.engine)


def schemathesis_admin_schema(document: dict[str, Any], base_url: str) -> Any:
    import schemathesis

    schema = schemathesis.openapi.from_dict(document).include(tag="admin")
    # Authenticated as an operator: the token is configuration, not input to mutate.
    schema.config.update(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    schema.config.generation.update(with_security_parameters=False, allow_x00=False)
    # The document's own links only: inferred ones guess (a nullable `replay_of` as a dead
    # letter id) and then call the refusal of their guess a failure.
    schema.config.phases.stateful.inference.algorithms = []
    # An erased payload is gone (410) to every later request, schema-valid or not.
    accepted = [*PositiveDataAcceptanceConfig().expected_statuses, "410"]
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=accepted
    )
    return schema


def _dead_letters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one())


_UNSETTLED = sa.text(
    """
    SELECT sent.event_id FROM unnest(CAST(:ids AS text[])) AS sent(event_id)
    WHERE NOT EXISTS (SELECT 1 FROM inbox AS i
                      WHERE i.subscription = 'ledger' AND i.source = 'stripe'
                        AND i.event_id = sent.event_id)
      AND NOT EXISTS (SELECT 1 FROM dead_letters AS d
                      WHERE d.subscription = 'ledger' AND d.source = 'stripe'
                        AND d.event_id = sent.event_id AND d.state IN ('pending', 'discarded'))
    """
)


def _unsettled(engine: Engine) -> list[str]:
    """Payments neither handled by the ledger nor resting as a dead letter: in flight, or
    lost once every replay has finished."""
    with engine.connect() as conn:
        running = conn.execute(
            sa.text("SELECT count(*) FROM replays WHERE state = 'running'")
        ).scalar_one()
        unsettled = list(conn.execute(_UNSETTLED, {"ids": list(SENT)}).scalars())
    return ["a replay is running"] if running else unsettled


def _assert_nothing_lost_or_applied_twice(engine: Engine) -> None:
    with engine.connect() as conn:
        applied = set(
            conn.execute(
                sa.text(
                    "SELECT event_id FROM inbox WHERE subscription = 'ledger'"
                    " AND source = 'stripe' AND outcome = 'applied' AND event_id = ANY(:ids)"
                ),
                {"ids": list(SENT)},
            ).scalars()
        )
        transactions = dict(
            conn.execute(
                sa.text(
                    "SELECT event_id, count(*) FROM ledger_transactions"
                    " WHERE subscription = 'ledger' AND event_id = ANY(:ids) GROUP BY event_id"
                ),
                {"ids": list(SENT)},
            ).all()
        )
        balances = dict(
            conn.execute(
                sa.text("SELECT id, available FROM accounts WHERE id = ANY(:ids)"),
                {"ids": list(ACCOUNTS)},
            ).all()
        )
    assert transactions == dict.fromkeys(applied, 1)
    for account in ACCOUNTS:
        want = sum(amount for event_id, (owner, amount) in SENT.items()
                   if owner == account and event_id in applied)  # fmt: skip
        assert balances.get(account, 0) == want, account
