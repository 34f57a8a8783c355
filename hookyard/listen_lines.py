"""One line per forwarded event: rich text for a terminal, a JSON object for a pipe.

Pure functions of a `Forwarded` record, so what a developer reads and what a script parses
are tested without a terminal. Everything shown may come from a sender, so control
characters are made visible: a payload's type must not be able to drive the terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from rich.text import Text

from hookyard import terminal_text
from hookyard.forwarding import Delivery


class Outcome(StrEnum):
    DELIVERED = "delivered"
    """The app answered 2xx."""
    REJECTED = "rejected"
    """The app answered, with something else."""
    FAILED = "failed"
    """No answer: refused, timed out, closed."""
    SKIPPED = "skipped"
    """Nothing to forward: the payload was erased, or the event is gone."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    at: datetime
    source: str
    event_type: str | None
    event_id: str
    webhook_id: str | None
    status: int | None
    error: str | None
    outcome: Outcome

    @classmethod
    def of(
        cls,
        at: datetime,
        event: dict[str, object],
        webhook_id: str,
        delivery: Delivery,
    ) -> Forwarded:
        if delivery.ok:
            outcome = Outcome.DELIVERED
        elif delivery.status is not None:
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.FAILED
        return cls(at, *_names(event), webhook_id, delivery.status, delivery.error, outcome)

    @classmethod
    def skipped(cls, at: datetime, event: dict[str, object], reason: str) -> Forwarded:
        return cls(at, *_names(event), None, None, reason, Outcome.SKIPPED)


def _names(event: dict[str, object]) -> tuple[str, str | None, str]:
    kind = event.get("event_type")
    return str(event.get("source")), None if kind is None else str(kind), str(event.get("event_id"))


def json_line(line: Forwarded) -> str:
    """One JSON object, ASCII-escaped (safe for any terminal, exact for any parser)."""
    return json.dumps(json_record(line))


def json_record(line: Forwarded) -> dict[str, object]:
    return {
        "time": line.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "source": line.source,
        "event_type": line.event_type,
        "event_id": line.event_id,
        "webhook_id": line.webhook_id,
        "outcome": line.outcome.value,
        "status": line.status,
        "error": line.error,
    }


STYLES = {
    Outcome.DELIVERED: "green",
    Outcome.REJECTED: "red",
    Outcome.FAILED: "bold red",
    Outcome.SKIPPED: "yellow",
}


def text_line(line: Forwarded) -> Text:
    """`12:04:31  stripe  payment_intent.succeeded  evt_1  -> 200`, the time in the zone
    of `line.at`, the result coloured by outcome."""
    text = Text()
    text.append(line.at.strftime("%H:%M:%S"), style="dim")
    text.append("  ")
    text.append(visible(line.source), style="cyan")
    text.append("  ")
    text.append(visible(line.event_type or "-"), style="bold")
    text.append("  ")
    text.append(visible(line.event_id))
    text.append("  -> ")
    text.append(_result(line), style=STYLES[line.outcome])
    return text


def _result(line: Forwarded) -> str:
    if line.outcome is Outcome.SKIPPED:
        return f"skipped: {visible(line.error or '')}"
    if line.status is not None:
        return str(line.status)
    return visible(line.error or "no answer")


def visible(text: str) -> str:
    """C0/C1 controls and DEL as visible symbols, on one line."""
    return terminal_text.visible(text)
