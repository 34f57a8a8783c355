"""What `hookyard listen` prints per event: a coloured line for a terminal, a JSON object
for a pipe; and the pure parts it is built from (ids, keys, signatures, the cursor)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rich.console import Console
from standardwebhooks.webhooks import Webhook

from common.errors import UsageError
from hookyard.event_cursor import LOOKBACK, Position
from hookyard.forwarding import (
    Delivery,
    checked_forward_url,
    checked_signing_secret,
    new_signing_secret,
    shown_url,
    signed_headers,
    webhook_id,
)
from hookyard.listen import Selection, parse_types
from hookyard.listen_lines import Forwarded, Outcome, json_line, text_line

AT = datetime(2026, 3, 1, 12, 4, 31, tzinfo=timezone(timedelta(hours=1)))
EVENT: dict[str, object] = {
    "id": 7,
    "source": "stripe",
    "event_id": "evt_1",
    "event_type": "payment_intent.succeeded",
}


def rendered(line: Forwarded) -> tuple[str, set[str]]:
    """The plain text and the styles a terminal would colour it with."""
    text = text_line(line)
    return text.plain, {str(span.style) for span in text.spans}


def test_a_delivered_event_is_one_green_line_and_one_json_object() -> None:
    line = Forwarded.of(AT, EVENT, "evt_stripe_evt_1", Delivery(status=200))
    plain, styles = rendered(line)
    assert plain == "12:04:31  stripe  payment_intent.succeeded  evt_1  -> 200"
    assert "green" in styles
    assert json.loads(json_line(line)) == {
        "time": "2026-03-01T11:04:31Z",
        "source": "stripe",
        "event_type": "payment_intent.succeeded",
        "event_id": "evt_1",
        "webhook_id": "evt_stripe_evt_1",
        "outcome": "delivered",
        "status": 200,
        "error": None,
    }


@pytest.mark.parametrize(
    ("delivery", "shown", "outcome"),
    [
        (Delivery(status=500), "-> 500", Outcome.REJECTED),
        (Delivery(None, "connection refused"), "-> connection refused", Outcome.FAILED),
        (Delivery(None, "timeout"), "-> timeout", Outcome.FAILED),
    ],
)
def test_an_app_that_fails_is_named_in_red(
    delivery: Delivery, shown: str, outcome: Outcome
) -> None:
    line = Forwarded.of(AT, EVENT, "evt_stripe_evt_1", delivery)
    plain, styles = rendered(line)
    assert plain.endswith(f"evt_1  {shown}")
    assert styles & {"red", "bold red"}
    as_json = json.loads(json_line(line))
    assert (as_json["outcome"], as_json["status"], as_json["error"]) == (
        outcome.value, delivery.status, delivery.error,
    )  # fmt: skip


def test_an_erased_payload_is_a_skipped_line() -> None:
    line = Forwarded.skipped(AT, EVENT, "payload erased")
    plain, _ = rendered(line)
    assert plain.endswith("evt_1  -> skipped: payload erased")
    as_json = json.loads(json_line(line))
    assert as_json["outcome"] == "skipped"
    assert as_json["status"] is None
    assert as_json["webhook_id"] is None


def test_sender_text_cannot_drive_the_terminal() -> None:
    hostile = {**EVENT, "event_type": "x\x1b[2Jy", "event_id": "a\x9bb"}
    line = Forwarded.of(AT, hostile, "evt_x", Delivery(status=204))
    console = Console(force_terminal=True, color_system="truecolor", width=200)
    with console.capture() as captured:
        console.print(text_line(line))
    assert "\x1b[2J" not in captured.get()
    assert "\x9b" not in captured.get()
    assert "x\u241b[2Jy" in text_line(line).plain
    # JSON is ASCII-escaped: exact for a parser, inert in a terminal.
    assert "\\u001b[2J" in json_line(line)


def test_webhook_ids_are_stable_distinct_and_header_safe() -> None:
    assert webhook_id("stripe", "evt_1") == "evt_stripe_evt_1"
    assert webhook_id("stripe", "evt_1") == webhook_id("stripe", "evt_1")
    spaced, underscored = webhook_id("github", "a b"), webhook_id("github", "a_b")
    assert spaced != underscored
    assert all(ch.isalnum() or ch in "_-" for ch in spaced)
    assert len(webhook_id("slack", "x" * 1000)) <= 104


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    secret = new_signing_secret()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    body = b'{"id": "evt_1", "amount": "\xc3\xa9"}\n'
    headers = signed_headers(
        secret, msg_id="evt_stripe_evt_1", body=body, now=datetime.now(UTC),
        content_type="application/json", source="stripe",
        event_type="payment_intent.succeeded", event_id="evt_1",
    )  # fmt: skip
    Webhook(secret).verify(body, headers)
    assert headers["Hookyard-Source"] == "stripe"
    assert headers["Hookyard-Event-Type"] == "payment_intent.succeeded"
    assert headers["Content-Type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook(new_signing_secret()).verify(body, headers)


def test_bodies_that_are_not_utf8_are_signed_over_their_bytes() -> None:
    import hashlib
    import hmac

    secret = new_signing_secret()
    body = b"payload=\xff\xfe"
    when = datetime(2026, 1, 1, tzinfo=UTC)
    headers = signed_headers(
        secret, msg_id="m", body=body, now=when, content_type="application/octet-stream",
        source="twilio", event_type=None, event_id="e",
    )  # fmt: skip
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"m.{int(when.timestamp())}.".encode() + body, hashlib.sha256)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected.digest()).decode()
    assert "Hookyard-Event-Type" not in headers


@pytest.mark.parametrize(
    "bad", ["secret", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_given_signing_secret_must_be_a_usable_key(bad: str) -> None:
    with pytest.raises(UsageError):
        checked_signing_secret(bad)


def test_the_forward_url_is_http_and_its_credentials_are_not_shown() -> None:
    assert checked_forward_url("http://localhost:5000/hooks") == "http://localhost:5000/hooks"
    for bad in ["localhost:5000/hooks", "ftp://host/x", "http:///x"]:
        with pytest.raises(UsageError):
            checked_forward_url(bad)
    assert shown_url("http://me:pw@127.0.0.1:5000/h") == "http://***@127.0.0.1:5000/h"


def test_types_come_comma_separated_or_repeated_and_may_be_globs() -> None:
    types = parse_types(["payment_intent.*,charge.refunded", "push"])
    assert types == ("payment_intent.*", "charge.refunded", "push")
    selection = Selection("stripe", types)
    assert selection.server_type is None
    assert selection.matches({"event_type": "payment_intent.succeeded"})
    assert not selection.matches({"event_type": "payout.paid"})
    assert Selection(None, ("push",)).server_type == "push"


def item(log_id: int, event_id: str) -> dict[str, object]:
    return {"source": "stripe", "event_id": event_id, "id": log_id}


def test_the_cursor_forwards_late_commits_once_and_nothing_from_before_the_start() -> None:
    position = Position()
    for number in (1, 2, 3):
        position.take(item(number, f"old{number}"))
    position.start_here()
    assert position.query() == "3"
    page = [item(4, "a"), item(6, "c")]
    assert [position.is_new(i) for i in page] == [True, True]
    for i in page:
        position.take(i)
    position.page_done()
    # id 5 committed after 6: the next poll still reaches it, and 4 and 6 are not new again.
    again = [item(4, "a"), item(5, "b"), item(6, "c")]
    assert [position.is_new(i) for i in again] == [False, True, False]
    position.take(again[1])
    position.page_done()
    for number in range(7, 7 + 2 * LOOKBACK):
        position.take(item(number, f"e{number}"))
    position.page_done()
    assert position.query() == str(6 + 2 * LOOKBACK - LOOKBACK)
    assert len(position.seen) <= LOOKBACK
