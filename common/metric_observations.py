"""Reads what the observable gauges report, from what `/admin/stats` already reads: the
backlog provider (the emulators' tables locally, Cloud Monitoring in GCP) and the database.

Each part is read on its own, so a Monitoring outage still lets dead letters and outbox lag
through, and a part that fails is left out of that collection rather than reported as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from common.db import dead_letters, outbound_messages, outbox
from common.logging import get_logger
from common.metrics import REASON_MASKS, Figures, bounded_counts, reason_label

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = get_logger(__name__)

Backlog = tuple[int | None, float | None]


def figures_reader(
    engine: Callable[[], Engine], backlog: Callable[[], dict[str, Any]] | None
) -> Callable[[], Figures]:
    def read() -> Figures:
        subscriptions: dict[str, Backlog] = {}
        queues: dict[str, Backlog] = {}
        if backlog is not None:
            try:
                stats = backlog()
                subscriptions = _backlog(stats.get("subscriptions", {}))
                queues = _backlog(stats.get("queues", {}))
            except Exception as exc:
                log.warning("metrics backlog unavailable", error_class=type(exc).__name__)
        counts: dict[tuple[str, ...], float] = {}
        lag: dict[str, float] = {}
        try:
            with engine().connect() as conn:
                rows = dead_letters.counts_by_state_and_reason(conn, REASON_MASKS)
                lag["notifications"] = outbox.oldest_unenqueued_age_s(conn)
                lag["messages"] = outbound_messages.oldest_unpublished_age_s(conn)
            counts = bounded_counts(((state, reason_label(reason)), n) for state, reason, n in rows)
        except Exception as exc:
            log.warning("metrics database figures unavailable", error_class=type(exc).__name__)
        return Figures(
            subscriptions=subscriptions,
            queues=queues,
            dead_letters={(labels[0], labels[1]): n for labels, n in counts.items()},
            outbox_lag=lag,
        )

    return read


def _backlog(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Backlog]:
    """`/admin/stats` figures; Monitoring's unavailable ones are None and stay unreported."""
    out: dict[str, Backlog] = {}
    for name, figures in rows.items():
        backlog, oldest = figures.get("backlog"), figures.get("oldest_unacked_age_s")
        if backlog == 0 and oldest is None:
            oldest = 0.0  # nothing waits: the oldest waits for nothing
        out[name] = (
            int(backlog) if backlog is not None else None,
            float(oldest) if oldest is not None else None,
        )
    return out
