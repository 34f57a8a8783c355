from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.errors import ConfigError
from common.topology import TOPOLOGY_PATH, load_topology


def test_shipped_topology_is_valid() -> None:
    topo = load_topology()
    assert topo.source("stripe") is not None
    assert topo.source("standard") is not None
    ledger = topo.subscription("ledger")
    assert ledger is not None
    assert ledger.dead_letter_policy is not None
    assert topo.subscriptions_of(ledger.dead_letter_policy.dead_letter_topic)
    assert "webhook-secret-stripe" in topo.all_secret_names()


def _write(tmp_path: Path, mutate: object) -> Path:
    raw = yaml.safe_load(TOPOLOGY_PATH.read_text())
    mutate(raw)  # type: ignore[operator]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw["subscriptions"][0].update(topic="nope"),
        lambda raw: raw["sources"][0].update(topic="nope"),
        lambda raw: raw["sources"][0].update(scheme="md5"),
        lambda raw: raw["subscriptions"].append(dict(raw["subscriptions"][0])),
        lambda raw: raw["subscriptions"][0]["dead_letter_policy"].update(max_delivery_attempts=2),
        lambda raw: raw["subscriptions"][0]["retry_policy"].update(minimum_backoff_s=700),
        lambda raw: raw["sources"][0].update(event_id={"header": "a", "json_pointer": "/b"}),
        lambda raw: raw["sources"][0].update(surprise=True),
        lambda raw: raw["subscriptions"][0].update(filter="attributes.source = "),
    ],
)
def test_invalid_topology_refuses_to_load(tmp_path: Path, mutate: object) -> None:
    with pytest.raises(ConfigError):
        load_topology(_write(tmp_path, mutate))


def _without_event_log(raw: dict[str, list[dict[str, object]]]) -> None:
    raw["subscriptions"] = [s for s in raw["subscriptions"] if s["name"] != "event-log"]


def test_every_shipped_source_has_a_durable_home() -> None:
    topo = load_topology()
    for source in topo.sources:
        assert topo.always_delivered(source), source.name


def test_a_topology_that_drops_some_sources_events_refuses_to_load(tmp_path: Path) -> None:
    """Without the unfiltered event-log, GitHub's events match no subscription (the ledger
    takes Stripe only): Pub/Sub would drop them after ingest answered 202."""
    with pytest.raises(ConfigError, match="source standard: some of its events"):
        load_topology(_write(tmp_path, _without_event_log))


@pytest.mark.parametrize(
    ("filter_text", "loads"),
    [
        ('attributes.source = "stripe" OR attributes.source = "standard" '
         'OR attributes.source = "github" OR attributes.source = "shopify" '
         'OR attributes.source = "slack" OR hasPrefix(attributes.source, "twi")', True),
        ("attributes:event_id", True),
        ('NOT attributes.source = "nobody"', True),
        ('attributes.source != "stripe"', True),  # the ledger's filter takes Stripe's
        ('attributes.source != "github"', False),
        ('attributes.event_type = "push"', False),  # events without this type are dropped
        ("attributes:event_type", False),  # not every sender has a type
        ('NOT attributes.event_type = "push"', False),
    ],
)  # fmt: skip
def test_coverage_is_decided_from_what_ingest_always_sets(
    tmp_path: Path, filter_text: str, loads: bool
) -> None:
    def mutate(raw: dict[str, list[dict[str, object]]]) -> None:
        _without_event_log(raw)
        raw["subscriptions"].append(
            {"name": "catch-all", "topic": "events", "push_path": "/pubsub/catch-all",
             "filter": filter_text}
        )  # fmt: skip

    path = _write(tmp_path, mutate)
    if loads:
        assert load_topology(path).subscription("catch-all") is not None
    else:
        with pytest.raises(ConfigError, match="would match no subscription"):
            load_topology(path)


def _rename_dead_letter_topic(name: str) -> object:
    def mutate(raw: dict[str, list[dict[str, object]]]) -> None:
        old = "events-dead-letter"
        for topic in raw["topics"]:
            if topic["name"] == old:
                topic["name"] = name
        for sub in raw["subscriptions"]:
            if sub["topic"] == old:
                sub["topic"] = name
            policy = sub.get("dead_letter_policy")
            if isinstance(policy, dict):
                policy["dead_letter_topic"] = name
        defaults = raw["handler_defaults"]
        assert isinstance(defaults, dict)
        defaults["dead_letter_policy"]["dead_letter_topic"] = name

    return mutate


@pytest.mark.parametrize(
    ("name", "loads"),
    [("dl", False), ("d", False), ("dlq", True), ("google-dlq", False), ("goo", True),
     ("d" * 63, True), ("1dlq", False)],
)  # fmt: skip
def test_pubsub_names_follow_pubsubs_rule(tmp_path: Path, name: str, loads: bool) -> None:
    """Pub/Sub names are 3 to 255 characters, a letter first, never `goog` first: a topic
    that cannot be created must not load locally and then fail at deployment."""
    path = _write(tmp_path, _rename_dead_letter_topic(name))
    if loads:
        assert load_topology(path).topic(name) is not None
    else:
        with pytest.raises(ConfigError):
            load_topology(path)


def test_short_subscription_names_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["subscriptions"][0].update(name="el"))
    with pytest.raises(ConfigError, match=r"subscriptions\.0\.name"):
        load_topology(path)


@pytest.mark.parametrize(("given", "meant"), [(0, 5), (5, 5), (100, 100)])
def test_zero_max_delivery_attempts_means_pubsubs_default(
    tmp_path: Path, given: int, meant: int
) -> None:
    path = _write(
        tmp_path,
        lambda raw: raw["subscriptions"][0]["dead_letter_policy"].update(
            max_delivery_attempts=given
        ),
    )
    policy = load_topology(path).subscriptions[0].dead_letter_policy
    assert policy is not None
    assert policy.max_delivery_attempts == meant


@pytest.mark.parametrize("attempts", [-1, 1, 4, 101])
def test_max_delivery_attempts_outside_pubsubs_range_are_refused(
    tmp_path: Path, attempts: int
) -> None:
    path = _write(
        tmp_path,
        lambda raw: raw["subscriptions"][0]["dead_letter_policy"].update(
            max_delivery_attempts=attempts
        ),
    )
    with pytest.raises(ConfigError):
        load_topology(path)


def test_each_dead_letter_topic_keeps_a_week_in_a_pull_subscription() -> None:
    topo = load_topology()
    retained = [p for p in topo.pull_subscriptions if p.topic == "events-dead-letter"]
    assert [(p.name, p.message_retention_s) for p in retained] == [
        ("events-dead-letter-retained", 7 * 24 * 3600)
    ]
    # Loading what was dumped derives nothing twice.
    again = type(topo).model_validate(topo.model_dump())
    assert again.pull_subscriptions == topo.pull_subscriptions


def test_a_declared_pull_subscription_on_a_dead_letter_topic_replaces_the_derived_one(
    tmp_path: Path,
) -> None:
    def declare(raw: dict[str, list[dict[str, object]]]) -> None:
        raw["pull_subscriptions"].append({"name": "dlq-audit", "topic": "events-dead-letter"})

    topo = load_topology(_write(tmp_path, declare))
    names = [p.name for p in topo.pull_subscriptions if p.topic == "events-dead-letter"]
    assert names == ["dlq-audit"]


@pytest.mark.parametrize(
    ("pull", "message"),
    [
        ({"name": "orphan", "topic": "nowhere"}, "unknown topic nowhere"),
        ({"name": "event-log", "topic": "events"}, "duplicate subscription 'event-log'"),
        ({"name": "kept", "topic": "events", "message_retention_s": 604801}, "less than or equal"),
    ],
)
def test_bad_pull_subscriptions_are_refused(
    tmp_path: Path, pull: dict[str, object], message: str
) -> None:
    path = _write(tmp_path, lambda raw: raw["pull_subscriptions"].append(pull))
    with pytest.raises(ConfigError, match=message):
        load_topology(path)
