"""Handlers in topology.yaml: each becomes a subscription whose filter is what Pub/Sub applies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.errors import ConfigError
from common.pubsub_filter import MAX_FILTER_BYTES, parse_filter
from common.topology import (
    INGEST_ATTRIBUTES,
    REPLAY_TO,
    TOPOLOGY_PATH,
    Topology,
    handler_filter,
    load_topology,
)

Raw = dict[str, Any]


def _load(tmp_path: Path, mutate: Callable[[Raw], None]) -> Topology:
    raw = yaml.safe_load(TOPOLOGY_PATH.read_text())
    mutate(raw)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_topology(path)


def _ingest(source: str, event_type: str | None, **extra: str) -> dict[str, str]:
    """Attributes as the webhook function publishes them."""
    attributes = {name: "x" for name in INGEST_ATTRIBUTES} | {"source": source}
    if event_type is not None:
        attributes["event_type"] = event_type
    return attributes | extra


def test_each_shipped_handler_gets_its_own_subscription_with_the_defaults() -> None:
    topology = load_topology()
    for handler in topology.handlers:
        sub = topology.subscription(handler.name)
        assert sub is not None, handler.name
        assert sub.push_path == f"/pubsub/{handler.name}"
        assert sub.topic == "events"
        assert sub.ack_deadline_seconds == 30
        assert sub.dead_letter_policy is not None
        assert sub.dead_letter_policy.dead_letter_topic == "events-dead-letter"
        assert sub.dead_letter_policy.max_delivery_attempts == 5
    assert {h.name for h in topology.handlers} == {"ledger", "github-builds", "shopify-stock"}


@pytest.mark.parametrize(
    ("handler", "attributes", "delivered"),
    [
        ("github-builds", _ingest("github", "push"), True),
        ("github-builds", _ingest("github", "pull_request"), False),
        ("github-builds", _ingest("stripe", "push"), False),
        ("github-builds", _ingest("github", None), False),
        ("shopify-stock", _ingest("shopify", "orders/create"), True),
        ("shopify-stock", _ingest("shopify", "orders/paid"), False),
        ("ledger", _ingest("stripe", "anything.at_all"), True),
        ("ledger", _ingest("github", "push"), False),
        # A replay reaches the handler it names and no other.
        ("ledger", _ingest("stripe", "x", **{REPLAY_TO: "ledger"}), True),
        ("ledger", _ingest("stripe", "x", **{REPLAY_TO: "github-builds"}), False),
        ("github-builds", _ingest("github", "push", **{REPLAY_TO: "ledger"}), False),
        ("event-log", _ingest("github", "push"), True),
        ("event-log", _ingest("github", "push", **{REPLAY_TO: "ledger"}), False),
        ("event-log", _ingest("github", "push", **{REPLAY_TO: "event-log"}), True),
    ],
)
def test_the_derived_filters_route_as_pubsub_would(
    handler: str, attributes: dict[str, str], delivered: bool
) -> None:
    sub = load_topology().subscription(handler)
    assert sub is not None
    assert parse_filter(sub.filter).matches(attributes) is delivered


def test_the_event_log_still_takes_every_ingested_event() -> None:
    """The loader's guarantee: no source's events can match no subscription."""
    topology = load_topology()
    assert all(topology.always_delivered(source) for source in topology.sources)


def test_prefix_globs_and_several_types() -> None:
    text = handler_filter("h", {"stripe": ["charge.dispute.*", "payout.paid"]})
    node = parse_filter(text)
    assert node.matches(_ingest("stripe", "charge.dispute.closed"))
    assert node.matches(_ingest("stripe", "payout.paid"))
    assert not node.matches(_ingest("stripe", "payout.failed"))
    assert not node.matches(_ingest("stripe", "charge.disputed"))


def test_a_filter_too_long_for_pubsub_names_the_sources_and_the_handler_checks_types(
    tmp_path: Path,
) -> None:
    types = [f"very.long.event.type.number.{n}" for n in range(12)]

    def add(raw: Raw) -> None:
        raw["handlers"].append({"name": "wide", "module": "m:f", "events": {"stripe": types}})

    topology = _load(tmp_path, add)
    sub, handler = topology.subscription("wide"), topology.handler("wide")
    assert sub is not None
    assert handler is not None
    assert len(sub.filter.encode()) <= MAX_FILTER_BYTES
    assert parse_filter(sub.filter).matches(_ingest("stripe", "unlisted"))
    assert handler.takes("stripe", types[3])
    assert not handler.takes("stripe", "unlisted")
    assert not handler.takes("github", types[3])


def test_a_handler_may_override_the_defaults(tmp_path: Path) -> None:
    def slow(raw: Raw) -> None:
        raw["handlers"][1].update(
            ack_deadline_seconds=120,
            dead_letter_policy={"dead_letter_topic": "events-dead-letter",
                                "max_delivery_attempts": 9},
        )  # fmt: skip

    sub = _load(tmp_path, slow).subscription("github-builds")
    assert sub is not None
    assert sub.dead_letter_policy is not None
    assert sub.ack_deadline_seconds == 120
    assert sub.dead_letter_policy.max_delivery_attempts == 9


def test_a_dumped_topology_loads_back_the_same() -> None:
    """Tests shrink retries by editing a dump; the handlers' subscriptions must survive it."""
    topology = load_topology()
    again = Topology.model_validate(topology.model_dump())
    assert again == topology


def _two_topics(raw: Raw) -> None:
    raw["topics"].append({"name": "other"})
    raw["sources"][3].update(topic="other")
    raw["subscriptions"].append(
        {"name": "other-log", "topic": "other", "push_path": "/pubsub/other-log"}
    )
    raw["handlers"].append(
        {"name": "both", "module": "m:f", "events": {"github": ["*"], "shopify": ["*"]}}
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw["handlers"][1].update(events={"gitlab": ["push"]}), "unknown source"),
        (lambda raw: raw["handlers"][1].update(events={"github": []}), "list its event types"),
        (lambda raw: raw["handlers"][1].update(events={"github": ["pu*sh"]}), "events"),
        (lambda raw: raw["handlers"][1].update(events={"github": ['a"b']}), "events"),
        (lambda raw: raw["handlers"][1].update(events={}), "events"),
        (lambda raw: raw["handlers"][1].update(module="not a module"), "module"),
        (lambda raw: raw["handlers"][1].update(name="ledger"), "duplicate subscription"),
        (lambda raw: raw["handlers"][1].update(name="event-log"), "reserved"),
        (lambda raw: raw["handlers"][1].update(name="dead-letters"), "reserved"),
        (
            lambda raw: raw["sources"][2].update(keep_headers=["X-Hub-Signature-256"]),
            "signature",
        ),
        (lambda raw: raw["sources"][0].update(keep_headers=["Authorization"]), "signature"),
        (lambda raw: raw["sources"][0].update(retention_days=0), "retention_days"),
        (_two_topics, "several topics"),
    ],
)
def test_handler_mistakes_are_refused_at_load(
    tmp_path: Path, mutate: Callable[[Raw], None], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, mutate)


def test_kept_headers_never_include_a_signature_and_always_the_id_and_type() -> None:
    topology = load_topology()
    github, shopify = topology.source("github"), topology.source("shopify")
    assert github is not None
    assert shopify is not None
    assert {"x-github-delivery", "x-github-event", "user-agent"} <= set(github.kept_headers)
    assert "x-shopify-shop-domain" in shopify.kept_headers
    for source in topology.sources:
        assert not {"x-hub-signature-256", "stripe-signature", "x-shopify-hmac-sha256",
                    "webhook-signature", "x-slack-signature", "x-twilio-signature",
                    "authorization"} & set(source.kept_headers)  # fmt: skip
