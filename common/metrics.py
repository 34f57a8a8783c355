"""Hookyard's metrics: every instrument's name, unit and attributes, and the calls code makes.

The instruments are OpenTelemetry's, created from the meter `common.telemetry` installs. With
no exporter configured nothing is installed and every call here returns at once, without
importing OpenTelemetry at all: the webhook target's cold start pays nothing for metrics it
does not export.

Attributes stay bounded, so a hostile sender cannot grow a time series per request: sources
outside the topology are `unknown`, outcomes and reasons are a fixed vocabulary or masked
text (`reason_label`), and observed label sets are capped (`bounded_counts`). Never an id,
never an error's own text.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from common.logging import get_logger

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

WEBHOOKS_RECEIVED = "hookyard.webhooks.received"
WEBHOOKS_ACCEPTED = "hookyard.webhooks.accepted"
WEBHOOKS_REJECTED = "hookyard.webhooks.rejected"
PUBLISH_DURATION = "hookyard.publish.duration"
PUSH_ATTEMPTS = "hookyard.push.attempts"
PUSH_RETRIES = "hookyard.push.retries"
ACK_LATENCY = "hookyard.push.ack_latency"
TASK_ATTEMPTS = "hookyard.task.attempts"
TASK_RETRIES = "hookyard.task.retries"
HANDLER_OUTCOMES = "hookyard.handler.outcomes"
REPLAY_MESSAGES = "hookyard.replay.messages"
SUBSCRIPTION_BACKLOG = "hookyard.subscription.backlog"
SUBSCRIPTION_OLDEST_AGE = "hookyard.subscription.oldest_unacked_age"
QUEUE_BACKLOG = "hookyard.queue.backlog"
QUEUE_OLDEST_AGE = "hookyard.queue.oldest_age"
DEAD_LETTERS = "hookyard.dead_letters"
OUTBOX_LAG = "hookyard.outbox.lag"

SOURCE = "source"
REASON = "reason"
TOPIC = "topic"
SUBSCRIPTION = "subscription"
QUEUE = "queue"
OUTCOME = "outcome"
HANDLER = "handler"
STATE = "state"
OUTBOX = "outbox"

UNKNOWN = "unknown"
OTHER = "other"
MAX_REASON_CHARS = 80
MAX_OBSERVED_SERIES = 50
OBSERVE_TTL_S = 5.0
LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip

log = get_logger(__name__)

REASON_MASKS = ((r"'[^']*'|\"[^\"]*\"", "'…'"), (r"[0-9]+", "N"))
"""Quoted values, then numbers: what a reason label hides (the same in Python and SQL)."""
_QUOTED = re.compile(REASON_MASKS[0][0])
_NUMBER = re.compile(REASON_MASKS[1][0])


def bounded_name(name: str | None, known: Collection[str]) -> str:
    """A name the topology declares (a source, a subscription, a queue), else `unknown`:
    a request's path is its sender's to choose."""
    return name if name is not None and name in known else UNKNOWN


def reason_label(reason: str | None) -> str:
    """A dead letter's reason as a label: quoted values and numbers masked (they name
    accounts, events, amounts), cut short. `unknown account 'acct_9'` -> `unknown account '…'`."""
    if not reason:
        return UNKNOWN
    masked = _NUMBER.sub(REASON_MASKS[1][1], _QUOTED.sub(REASON_MASKS[0][1], reason))
    masked = " ".join(masked.split())
    return masked[:MAX_REASON_CHARS] or UNKNOWN


def bounded_counts(
    counts: Iterable[tuple[tuple[str, ...], float]], limit: int = MAX_OBSERVED_SERIES
) -> dict[tuple[str, ...], float]:
    """Sums counts per label tuple, keeping the `limit - 1` largest and folding the rest into
    one series whose last label is `other`."""
    summed: dict[tuple[str, ...], float] = {}
    for labels, value in counts:
        summed[labels] = summed.get(labels, 0) + value
    if len(summed) <= limit:
        return summed
    ranked = sorted(summed.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: limit - 1])
    for labels, value in ranked[limit - 1 :]:
        folded = (*labels[:-1], OTHER)
        kept[folded] = kept.get(folded, 0) + value
    return kept


@dataclass(frozen=True, slots=True)
class Figures:
    """What the observable gauges report, read at collection time."""

    subscriptions: Mapping[str, tuple[int | None, float | None]] = field(default_factory=dict)
    """Subscription -> (backlog, oldest unacked age in seconds); None where unknown."""
    queues: Mapping[str, tuple[int | None, float | None]] = field(default_factory=dict)
    dead_letters: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(state, reason label) -> rows."""
    outbox_lag: Mapping[str, float] = field(default_factory=dict)
    """Outbox (`notifications`, `messages`) -> age in seconds of its oldest row not sent."""


FiguresReader = Callable[[], Figures]


class _Observed:
    """One read per `ttl_s` feeds every gauge of a collection; a failed read reports nothing
    (a scrape never fails for it) and is tried again at the next collection."""

    def __init__(self, ttl_s: float = OBSERVE_TTL_S) -> None:
        self.reader: FiguresReader | None = None
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._figures: Figures | None = None
        self._read_at = 0.0

    def set(self, reader: FiguresReader | None) -> None:
        with self._lock:
            self.reader, self._figures, self._read_at = reader, None, 0.0

    def figures(self) -> Figures | None:
        with self._lock:
            if self.reader is None:
                return None
            now = time.monotonic()
            if self._figures is None or now - self._read_at >= self._ttl:
                try:
                    self._figures = self.reader()
                except Exception as exc:
                    log.warning("metrics figures unavailable", error_class=type(exc).__name__)
                    self._figures = None
                    return None
                self._read_at = now
            return self._figures


class _Instruments:
    def __init__(self, meter: Meter, observed: _Observed) -> None:
        counter = meter.create_counter
        self.received: Counter = counter(WEBHOOKS_RECEIVED, "1", "webhook requests received")
        self.accepted: Counter = counter(WEBHOOKS_ACCEPTED, "1", "webhooks published (202)")
        self.rejected: Counter = counter(WEBHOOKS_REJECTED, "1", "webhooks refused, by reason")
        self.publish: Histogram = meter.create_histogram(
            PUBLISH_DURATION, "s", "publish calls until the broker confirmed (or failed)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )  # fmt: skip
        self.push: Counter = counter(PUSH_ATTEMPTS, "1", "push deliveries, by outcome")
        self.push_retries: Counter = counter(PUSH_RETRIES, "1", "push deliveries after the first")
        self.ack_latency: Histogram = meter.create_histogram(
            ACK_LATENCY, "s", "from publish to the worker's ack",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )  # fmt: skip
        self.task: Counter = counter(TASK_ATTEMPTS, "1", "task attempts, by outcome")
        self.task_retries: Counter = counter(TASK_RETRIES, "1", "task attempts after the first")
        self.handler: Counter = counter(HANDLER_OUTCOMES, "1", "handler outcomes per handler")
        self.replay: Counter = counter(REPLAY_MESSAGES, "1", "dead letters a replay reached")

        def gauge(name: str, unit: str, description: str, read: _Read) -> None:
            meter.create_observable_gauge(
                name, [_callback(observed, read)], unit=unit, description=description
            )

        gauge(SUBSCRIPTION_BACKLOG, "1", "messages not yet acked", _backlog("subscriptions", 0))
        gauge(SUBSCRIPTION_OLDEST_AGE, "s", "age of the oldest unacked message",
              _backlog("subscriptions", 1))  # fmt: skip
        gauge(QUEUE_BACKLOG, "1", "tasks not yet done", _backlog("queues", 0))
        gauge(QUEUE_OLDEST_AGE, "s", "age of the oldest task not done", _backlog("queues", 1))
        gauge(DEAD_LETTERS, "1", "dead letters by state and reason", _dead_letters)
        gauge(OUTBOX_LAG, "s", "age of the oldest outbox row not yet sent", _outbox_lag)


_Read = Callable[[Figures], Iterable[tuple[float, dict[str, str]]]]


def _backlog(kind: str, index: int) -> _Read:
    key = SUBSCRIPTION if kind == "subscriptions" else QUEUE

    def read(figures: Figures) -> Iterable[tuple[float, dict[str, str]]]:
        rows: Mapping[str, tuple[int | None, float | None]] = getattr(figures, kind)
        for name, values in sorted(rows.items())[:MAX_OBSERVED_SERIES]:
            value = values[index]
            if value is not None:
                yield float(value), {key: name}

    return read


def _dead_letters(figures: Figures) -> Iterable[tuple[float, dict[str, str]]]:
    for (state, reason), count in figures.dead_letters.items():
        yield float(count), {STATE: state, REASON: reason}


def _outbox_lag(figures: Figures) -> Iterable[tuple[float, dict[str, str]]]:
    for outbox, age in figures.outbox_lag.items():
        yield float(age), {OUTBOX: outbox}


def _callback(
    observed: _Observed, read: _Read
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        figures = observed.figures()
        if figures is None:
            return []
        return [Observation(value, attributes) for value, attributes in read(figures)]

    return callback


_observed = _Observed()
_instruments: _Instruments | None = None


def install(meter: Meter | None) -> None:
    """Creates the instruments on `meter`; None turns every call here into a no-op."""
    global _instruments
    _instruments = _Instruments(meter, _observed) if meter is not None else None


def observe(reader: FiguresReader | None) -> None:
    """What the observable gauges read (one process registers it: the admin target)."""
    _observed.set(reader)


def webhook_received(source: str) -> None:
    if (i := _instruments) is not None:
        i.received.add(1, {SOURCE: source})


def webhook_accepted(source: str) -> None:
    if (i := _instruments) is not None:
        i.accepted.add(1, {SOURCE: source})


def webhook_rejected(source: str, reason: str) -> None:
    """`reason` is a problem's slug (`invalid-signature`, `payload-too-large`, …)."""
    if (i := _instruments) is not None:
        i.rejected.add(1, {SOURCE: source, REASON: reason})


def publish_finished(topic: str, seconds: float, *, ok: bool) -> None:
    if (i := _instruments) is not None:
        i.publish.record(seconds, {TOPIC: topic, OUTCOME: "ok" if ok else "error"})


def push_attempt(
    subscription: str,
    outcome: str,
    delivery_attempt: int | None = None,
    publish_time: str = "",
) -> None:
    """`outcome`: ack, dead_letter (stored, then acked), nack or rejected (never reached a
    handler). An ack's latency counts from the message's publish time (RFC 3339)."""
    if (i := _instruments) is None:
        return
    attributes = {SUBSCRIPTION: subscription}
    i.push.add(1, {**attributes, OUTCOME: outcome})
    if delivery_attempt is not None and delivery_attempt > 1:
        i.push_retries.add(1, attributes)
    if outcome in {"ack", "dead_letter"} and (published := _instant(publish_time)) is not None:
        latency = (datetime.now(UTC) - published).total_seconds()
        i.ack_latency.record(max(latency, 0.0), attributes)


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def task_attempt(queue: str, outcome: str, retry_count: int = 0) -> None:
    """`outcome`: done, dead_letter (stored, then done), retry or rejected."""
    if (i := _instruments) is None:
        return
    i.task.add(1, {QUEUE: queue, OUTCOME: outcome})
    if retry_count > 0:
        i.task_retries.add(1, {QUEUE: queue})


def handler_outcome(handler: str, outcome: str) -> None:
    """`outcome`: applied, ignored, duplicate, skipped (not its event), dead_letter, failed."""
    if (i := _instruments) is not None:
        i.handler.add(1, {HANDLER: handler, OUTCOME: outcome})


def replay_progress(republished: int, failed: int) -> None:
    if (i := _instruments) is None:
        return
    if republished:
        i.replay.add(republished, {OUTCOME: "republished"})
    if failed:
        i.replay.add(failed, {OUTCOME: "failed"})
