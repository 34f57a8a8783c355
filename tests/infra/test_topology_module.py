"""infra/modules/topology derives from topology.yaml exactly what common/topology.py does.

The module is evaluated by the real terraform binary (offline: it has no provider) on the
shipped topology and on topologies written to exercise every default and derivation rule,
and its outputs must equal the Python model's. A rule changed on one side only fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.errors import ConfigError
from common.topology import TOPOLOGY_PATH, load_topology
from tests.infra.expected import google_view, model_view
from tests.support.terraform import TerraformFailed, evaluate

URLS = {
    "worker_url": "https://hookyard-worker-123.europe-west1.run.app",
    "cron_url": "https://hookyard-cron-123.europe-west1.run.app",
    "cron_audience": "https://hookyard-cron-123.europe-west1.run.app",
    "push_service_account": "hookyard-push@p.iam.gserviceaccount.com",
    "scheduler_service_account": "hookyard-scheduler@p.iam.gserviceaccount.com",
}

LONG_TYPES = [f"customer.subscription.trial_will_end_{n}" for n in range(8)]

EXERCISED: dict[str, Any] = {
    "topics": [
        {"name": "events"},
        {"name": "events-dead-letter"},
        {"name": "other"},
        {"name": "other-dlq"},
        {"name": "outbound"},
    ],
    "subscriptions": [
        {"name": "event-log", "topic": "events", "push_path": "/pubsub/event-log"},
        {
            "name": "ordered",
            "topic": "events",
            "push_path": "/pubsub/ordered",
            "ack_deadline_seconds": 60,
            "retry_policy": {"maximum_backoff_s": 120},
            "enable_message_ordering": True,
            "filter": 'attributes.source = "a"',
        },
        {
            "name": "other-log",
            "topic": "other",
            "push_path": "/pubsub/other-log",
            "dead_letter_policy": {"dead_letter_topic": "other-dlq", "max_delivery_attempts": 0},
        },
        {"name": "declared-handler", "topic": "other", "push_path": "/pubsub/declared-handler"},
    ],
    "pull_subscriptions": [
        {"name": "outbound-ci", "topic": "outbound"},
        {
            "name": "other-dlq-kept",
            "topic": "other-dlq",
            "message_retention_s": 3600,
            "ack_deadline_seconds": 20,
        },
    ],
    "sources": [
        {
            "name": n,
            "scheme": "hmac",
            "secret": f"secret-{n}",
            "topic": t,
            "event_id": {"header": "X-Id"},
            "hmac": {"header": "X-Sig"},
        }
        for n, t in (("b", "events"), ("a", "events"), ("c", "other"))
    ],
    "handler_defaults": {
        "ack_deadline_seconds": 45,
        "retry_policy": {"minimum_backoff_s": 1},
        "dead_letter_policy": {
            "dead_letter_topic": "events-dead-letter",
            "max_delivery_attempts": 7,
        },
    },
    "handlers": [
        # Sources given out of name order, prefixes, exact types and "*".
        {"name": "h-many", "module": "m:f", "events": {"b": ["x.*", "yy"], "a": ["*"]}},
        # Too long with its types: the filter names the sources only.
        {"name": "h-long", "module": "m:f", "events": {"a": LONG_TYPES, "b": LONG_TYPES}},
        # Its own settings replace the defaults' whole blocks (a shallow merge).
        {
            "name": "h-own",
            "module": "m:f",
            "events": {"a": ["one"]},
            "ack_deadline_seconds": 20,
            "dead_letter_policy": {"dead_letter_topic": "events-dead-letter"},
        },
        # A declared subscription by a handler's name wins over the derived one.
        {"name": "declared-handler", "module": "m:f", "events": {"c": ["*"]}},
    ],
    "queues": [
        {"name": "jobs"},
        {
            "name": "q2",
            "rate_limits": {"max_dispatches_per_second": 2.5},
            "retry_config": {"max_attempts": -1, "max_retry_duration_s": 30, "min_backoff_s": 0.5},
            "dispatch_deadline_s": 45,
        },
    ],
    "jobs": [
        {"name": "j1", "schedule": "*/5 * * * *"},
        {
            "name": "j2",
            "schedule": "0 4 * * 1",
            "time_zone": "Europe/Paris",
            "description": "weekly",
            "retry_config": {"retry_count": 2, "max_doublings": 1},
            "attempt_deadline_s": 60,
        },
    ],
    "secrets": ["admin-token", "secret-a"],
}


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _terraform_view(tmp_path: Path, topology_file: Path) -> dict[str, Any]:
    inputs = {"topology_file": str(topology_file), **URLS}
    return evaluate(tmp_path / "root", {"topology": ("modules/topology", inputs)})["topology"]


def _compare(tmp_path: Path, topology_file: Path) -> dict[str, Any]:
    topology = load_topology(topology_file)
    seen = _terraform_view(tmp_path, topology_file)
    expected = {**model_view(topology), **google_view(topology, URLS)}
    assert set(seen) == set(expected)
    for key, value in expected.items():
        assert seen[key] == value, key
    return seen


def test_the_shipped_topology_is_what_terraform_deploys(tmp_path: Path) -> None:
    seen = _compare(tmp_path, TOPOLOGY_PATH)
    topology = load_topology()
    for handler in topology.handlers:
        assert handler.name in seen["subscriptions"], handler.name
    assert "events-dead-letter-retained" in seen["pull_subscriptions"]


def test_every_default_and_derivation_rule_agrees(tmp_path: Path) -> None:
    seen = _compare(tmp_path, _write(tmp_path, EXERCISED))
    subscriptions = seen["subscriptions"]
    # The cases above are what they claim to be, so the agreement means something.
    assert subscriptions["h-many"]["filter"].index('"a"') < subscriptions["h-many"]["filter"].index(
        '"b"'
    )
    assert "event_type" not in subscriptions["h-long"]["filter"]
    assert subscriptions["h-own"]["dead_letter_policy"]["max_delivery_attempts"] == 5
    assert subscriptions["h-many"]["dead_letter_policy"]["max_delivery_attempts"] == 7
    assert subscriptions["declared-handler"]["filter"] == ""
    assert subscriptions["other-log"]["dead_letter_policy"]["max_delivery_attempts"] == 5
    assert set(seen["pull_subscriptions"]) == {
        "outbound-ci", "other-dlq-kept", "events-dead-letter-retained"
    }  # fmt: skip
    assert seen["google_queues"]["q2"]["max_retry_duration"] == "30s"
    assert seen["google_queues"]["jobs"]["max_retry_duration"] is None


def test_a_topology_with_only_topics_is_read_as_empty_lists(tmp_path: Path) -> None:
    seen = _compare(tmp_path, _write(tmp_path, {"topics": [{"name": "solo"}]}))
    assert seen["subscriptions"] == {}
    assert seen["secrets"] == []


def test_a_handler_no_filter_can_hold_is_refused_on_both_sides(tmp_path: Path) -> None:
    raw = {
        "topics": [{"name": "events"}],
        "subscriptions": [{"name": "event-log", "topic": "events", "push_path": "/pubsub/log"}],
        "sources": [
            {
                "name": f"source-with-a-long-name-{n:02}",
                "scheme": "hmac",
                "secret": "s",
                "topic": "events",
                "event_id": {"header": "X-Id"},
                "hmac": {"header": "X-Sig"},
            }
            for n in range(12)
        ],
        "handlers": [
            {
                "name": "greedy",
                "module": "m:f",
                "events": {f"source-with-a-long-name-{n:02}": ["*"] for n in range(12)},
            }
        ],
    }
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError, match="too many sources"):
        load_topology(path)
    with pytest.raises(TerraformFailed, match="256 bytes"):
        _terraform_view(tmp_path, path)


def test_a_plain_y_is_refused_because_terraform_reads_it_as_true(tmp_path: Path) -> None:
    """PyYAML alone reads `y` as "y"; Terraform's yamldecode reads `true`. Both must agree,
    so the loader reads it as Terraform does and refuses it where a name is expected."""
    raw = yaml.safe_dump(EXERCISED, sort_keys=False).replace("- yy", "- y")
    assert "- y\n" in raw
    path = tmp_path / "topology.yaml"
    path.write_text(raw, encoding="utf-8")
    with pytest.raises(ConfigError, match="valid string"):
        load_topology(path)
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text(raw.replace("- y\n", "- 'y'\n"), encoding="utf-8")
    assert load_topology(quoted).handler("h-many") is not None


def test_handlers_without_handler_defaults_take_the_models_own(tmp_path: Path) -> None:
    raw = {
        "topics": [{"name": "events"}, {"name": "events-dead-letter"}],
        "subscriptions": [{"name": "event-log", "topic": "events", "push_path": "/pubsub/log"}],
        "sources": EXERCISED["sources"][:1],
        "handlers": [{"name": "plain", "module": "m:f", "events": {"b": ["*"]}}],
    }
    seen = _compare(tmp_path, _write(tmp_path, raw))
    assert seen["subscriptions"]["plain"]["ack_deadline_seconds"] == 30
