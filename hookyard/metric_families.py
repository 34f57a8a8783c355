"""Merges several processes' Prometheus pages into one, each sample labelled by its target.

Each target process renders its own registry; the front door serves them as one page, which
must stay valid exposition text: one HELP and TYPE per family, whichever targets report it.
A family two targets declare with different types keeps the first type seen and drops the
other's samples rather than emit an invalid page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

TARGET_LABEL = "target"


class _Families:
    """What `generate_latest` renders: anything with `collect()`."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_pages(pages: Sequence[tuple[str, str]]) -> bytes:
    """`pages` are (target, exposition text) pairs, in the order families should appear."""
    merged: dict[str, Metric] = {}
    for target, text in pages:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type)
                into.unit = family.unit
            elif into.type != family.type:
                continue
            into.samples.extend(_labelled(sample, target) for sample in family.samples)
    return generate_latest(_Families(merged.values()))


def _labelled(sample: Sample, target: str) -> Sample:
    return sample._replace(labels={**sample.labels, TARGET_LABEL: target})
