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
