"""`hookyard trigger`'s fixtures, read the way the stack reads them: every body it builds
carries the id and type the webhook function extracts, and a Stripe one is a ledger event."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from common.errors import UsageError
from common.topology import Source, get_topology
from common.webhook_body import JSON, event_id, first_present, parse_body
from hookyard import trigger
from hookyard.sender import sender_request
from workers.ledger.events import (
    ChargeRefunded,
    DisputeClosed,
    DisputeCreated,
    PaymentSucceeded,
    PayoutPaid,
    parse_event,
)

FIXTURES = [
    pytest.param(source, name, id=f"{source} {name}")
    for source, names in trigger.catalogue().items()
    for name in names
]
# What the webhook function reads as the type, where the body (not the name) says it.
BODY_TYPES = {
    ("slack", "slash_command"): "/weather",
    ("twilio", "message_status"): "delivered",
    ("twilio", "incoming_message"): "received",
    ("twilio", "call_status"): "completed",
}
# Twilio's status callbacks make the status part of the event id.
QUALIFIERS = {("twilio", "message_status"): ":delivered", ("twilio", "call_status"): ":completed"}
REQUIRED = {
    "stripe": {"payment_intent.succeeded", "charge.refunded", "payout.paid",
               "charge.dispute.created", "charge.dispute.closed"},
    "github": {"push", "pull_request", "ping"},
    "shopify": {"orders/create", "orders/paid", "products/update"},
    "slack": {"message", "slash_command"},
    "twilio": {"message_status"},
    "standard": {"invoice.paid"},
}  # fmt: skip


def spec(source: str) -> Source:
    found = get_topology().source(source)
    assert found is not None
    return found


def build(
    source: str,
    name: str,
    *,
    fill: trigger.Fill | None = None,
    assignments: Sequence[trigger.Assignment] = (),
    pinned_id: str | None = None,
    now: datetime | None = None,
) -> trigger.Triggered:
    fixture = trigger.load(source, name)
    return trigger.build(
        fixture, spec(source), fill=fill, assignments=assignments, pinned_id=pinned_id, now=now
    )


def as_received(source: str, built: trigger.Triggered) -> tuple[str, str | None]:
    """(event id, event type) as the webhook function reads them from what `trigger` posts:
    the body plus the headers `sender_request` signs it with."""
    _, headers = sender_request(
        spec(source), built.body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=1_700_000_000,
        url=f"http://127.0.0.1/webhooks/{source}", event_id=built.delivery_id,
        event_type=built.type_header, media_type=built.media_type,
    )  # fmt: skip
    assert headers["Content-Type"] == built.media_type
    parsed = parse_body(built.body, built.media_type)
    source_spec = spec(source)
    found_id = event_id(source_spec.event_id, source_spec.event_id_qualifiers, headers, parsed)
    return found_id, first_present(source_spec.event_type, headers, parsed)


def test_every_shipped_source_has_its_common_events() -> None:
    found = trigger.catalogue()
    assert sorted(found) == sorted(s.name for s in get_topology().sources)
    for source, names in REQUIRED.items():
        assert names <= set(found[source]), source


def test_fixtures_ship_inside_the_package_and_load_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    package = Path(trigger.__file__).parent
    assert Path(str(trigger.FIXTURES)) == package / "fixtures"
    assert trigger.load("shopify", "orders/create").media_type == JSON


@pytest.mark.parametrize(("source", "name"), FIXTURES)
def test_every_fixture_yields_the_id_and_type_the_webhook_reads(source: str, name: str) -> None:
    built = build(source, name)
    assert built.media_type in spec(source).content_types
    found_id, found_type = as_received(source, built)
    assert (found_id, found_type) == (built.event_id, built.event_type)
    assert found_type == BODY_TYPES.get((source, name), name)
    again = build(source, name)
    assert as_received(source, again)[0] != found_id  # a second trigger is a second event
    assert b"{{" not in built.body  # every placeholder was filled


@pytest.mark.parametrize(("source", "name"), FIXTURES)
def test_event_id_pins_the_id_wherever_the_source_reads_it(source: str, name: str) -> None:
    first, second = (build(source, name, pinned_id="pinned-1") for _ in range(2))
    qualifier = QUALIFIERS.get((source, name), "")
    assert (
        as_received(source, first)[0] == as_received(source, second)[0] == ("pinned-1" + qualifier)
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("payment_intent.succeeded", PaymentSucceeded("acct_A", "eur", 2500)),
        ("payout.paid", PayoutPaid("acct_A", "eur", 2500)),
    ],
)
def test_stripe_amount_events_reach_the_ledger_as_given(name: str, expected: object) -> None:
    fill = trigger.Fill(account="acct_A", amount=2500, currency=trigger.parse_currency("EUR"))
    assert parse_event(build("stripe", name, fill=fill).body) == expected


def test_stripe_refunds_and_disputes_carry_their_objects_ids() -> None:
    fill = trigger.Fill(account="acct_A", amount=700)
    refund = build("stripe", "charge.refunded", fill=fill)
    charge_id = json.loads(refund.body)["data"]["object"]["id"]
    assert parse_event(refund.body) == ChargeRefunded("acct_A", "usd", charge_id, 700)
    opened = build("stripe", "charge.dispute.created", fill=fill)
    dispute = json.loads(opened.body)["data"]["object"]
    assert parse_event(opened.body) == DisputeCreated("acct_A", "usd", dispute["id"], 700)
    # The close of that dispute: its id set from the created event's.
    closed = build(
        "stripe", "charge.dispute.closed", fill=fill,
        assignments=[trigger.parse_assignment(f"data.object.id={dispute['id']}")],
    )  # fmt: skip
    assert parse_event(closed.body) == DisputeClosed("acct_A", "usd", dispute["id"], won=True)


def test_defaults_fill_a_stripe_payment_for_the_tour_account() -> None:
    assert parse_event(build("stripe", "payment_intent.succeeded").body) == PaymentSucceeded(
        trigger.DEFAULT_ACCOUNT, trigger.DEFAULT_CURRENCY, trigger.DEFAULT_AMOUNT
    )


def test_one_placeholder_is_one_value_and_times_are_now() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
    push = json.loads(build("github", "push", now=now).body)
    assert push["after"] == push["head_commit"]["id"] == push["commits"][0]["id"]
    assert push["before"] != push["after"]
    assert push["compare"].endswith(f"/compare/{push['before']}...{push['after']}")
    assert push["head_commit"]["timestamp"] == "2026-03-04T05:06:07Z"
    payment = json.loads(build("stripe", "payment_intent.succeeded", now=now).body)
    assert payment["created"] == int(now.timestamp())
    assert payment["data"]["object"]["amount"] == payment["data"]["object"]["amount_received"]
    slack = json.loads(build("slack", "message", now=now).body)
    assert slack["event"]["ts"] == f"{int(now.timestamp())}.890000"


def test_set_writes_json_values_and_text() -> None:
    sets = [
        trigger.parse_assignment(raw)
        for raw in (
            "data.object.metadata.account_id=acct_set",
            "data.object.amount_received=4200",
            'data.object.description="4200"',
            "data.object.payment_method_types.0=sepa_debit",
            "data.object.metadata.order=[1, 2]",
            "livemode=true",
            "data.object.receipt_email=NaN",
        )
    ]
    body = json.loads(build("stripe", "payment_intent.succeeded", assignments=sets).body)
    obj = body["data"]["object"]
    assert obj["metadata"] == {"account_id": "acct_set", "order": [1, 2]}
    assert obj["amount_received"] == 4200
    assert obj["description"] == "4200"
    assert obj["payment_method_types"] == ["sepa_debit"]
    assert body["livemode"] is True
    assert obj["receipt_email"] == "NaN"  # not JSON (JSON has no NaN): the text itself


def test_set_on_a_form_fixture_sets_the_field() -> None:
    sets = [trigger.parse_assignment("MessageStatus=undelivered"),
            trigger.parse_assignment("ErrorCode=30003")]  # fmt: skip
    built = build("twilio", "message_status", assignments=sets)
    form = dict(parse_qsl(built.body.decode()))
    assert (form["MessageStatus"], form["ErrorCode"]) == ("undelivered", "30003")
    assert built.event_type == "undelivered"
    assert built.event_id == f"{form['MessageSid']}:undelivered"


@pytest.mark.parametrize(
    "raw",
    ["noequals", "=1", "a..b=1", ".a=1", "a.=1"],
)
def test_malformed_set_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError, match="PATH=VALUE"):
        trigger.parse_assignment(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("data.objet.amount=1", "data.objet does not exist"),
        ("id.x=1", "id is a string"),
        ("data.object.payment_method_types.3=x", "has no item 3"),
        ('id="bad\\u0000"', "NUL"),
        ("id=null", "missing event id"),
        ("data.object.metadata=" + "[" * 70 + "]" * 70, "deeper than 64"),
    ],
)
def test_set_that_the_stack_would_refuse_is_a_usage_error(raw: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build("stripe", "payment_intent.succeeded", assignments=[trigger.parse_assignment(raw)])


def test_form_fields_take_no_objects() -> None:
    with pytest.raises(UsageError, match="holds text"):
        build("slack", "slash_command", assignments=[trigger.parse_assignment('text={"a":1}')])


@pytest.mark.parametrize("raw", ["-5", "12.5", "1e3", "", "٣", "9223372036854775808"])
def test_amount_out_of_range_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError, match="--amount"):
        trigger.parse_amount(raw)


def test_fills_a_fixture_has_no_place_for_are_refused() -> None:
    with pytest.raises(UsageError, match="github push has no amount"):
        build("github", "push", fill=trigger.Fill(amount=5))


def test_unknown_source_or_type_names_what_exists() -> None:
    with pytest.raises(UsageError, match=r"'paypal' \(there are: github, shopify"):
        trigger.load("paypal", "x")
    with pytest.raises(UsageError, match=r"no github fixture '../stripe/payout.paid'"):
        trigger.load("github", "../stripe/payout.paid")


def test_pinned_ids_the_stack_would_refuse_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="control characters"):
        build("github", "ping", pinned_id="a\nb")
    with pytest.raises(UsageError, match="missing event id"):
        build("stripe", "payout.paid", pinned_id="")
