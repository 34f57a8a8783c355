"""Stripe-style event payloads turned into ledger commands; pure, so every rule is unit-tested.

Shape: `{"id","type","created","data":{"object":{..., "metadata":{"account_id"}}}}`. A payload
that can never be applied (missing account, negative amount) is a `PermanentError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import bounded_json
from common.errors import PermanentError
from common.storable import bigint_problem, text_problem


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    account_id: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class ChargeRefunded:
    account_id: str
    currency: str
    charge_id: str
    cumulative_refunded: int


@dataclass(frozen=True, slots=True)
class PayoutPaid:
    account_id: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class DisputeCreated:
    account_id: str
    currency: str
    dispute_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class DisputeClosed:
    account_id: str
    currency: str
    dispute_id: str
    won: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    event_type: str


Effect = PaymentSucceeded | ChargeRefunded | PayoutPaid | DisputeCreated | DisputeClosed
LedgerCommand = Effect | Ignored


def parse_event(data: bytes) -> LedgerCommand:
    try:
        doc = bounded_json.loads(data)
    except bounded_json.JsonTooDeep as exc:
        raise PermanentError(f"event body: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError("event body is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise PermanentError("event body is not a JSON object")
    event_type = doc.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PermanentError("event has no type")
    if (reason := text_problem(event_type)) is not None:
        raise PermanentError(f"event type {reason}")
    builder = _BUILDERS.get(event_type)
    if builder is None:
        return Ignored(event_type)
    obj = (doc.get("data") or {}).get("object") if isinstance(doc.get("data"), dict) else None
    if not isinstance(obj, dict):
        raise PermanentError(f"{event_type}: data.object is missing")
    return builder(obj)


def _text(obj: dict[str, Any], name: str, where: str) -> str:
    """A non-empty string PostgreSQL can store: anything else could never be applied."""
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise PermanentError(f"{where} is missing")
    if (reason := text_problem(value)) is not None:
        raise PermanentError(f"{where} {reason}")
    return value


def _account(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise PermanentError("data.object.metadata.account_id is missing")
    return _text(metadata, "account_id", "data.object.metadata.account_id")


def _currency(obj: dict[str, Any]) -> str:
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise PermanentError("data.object.currency is missing or not an ISO code")
    return currency.lower()


def _amount(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PermanentError(f"data.object.{name} must be a non-negative integer")
    if (reason := bigint_problem(value)) is not None:
        raise PermanentError(f"data.object.{name} {reason}")
    return value


def _payment(obj: dict[str, Any]) -> PaymentSucceeded:
    return PaymentSucceeded(_account(obj), _currency(obj), _amount(obj, "amount_received"))


def _refund(obj: dict[str, Any]) -> ChargeRefunded:
    charge_id = _text(obj, "id", "charge.refunded: data.object.id")
    return ChargeRefunded(_account(obj), _currency(obj), charge_id, _amount(obj, "amount_refunded"))


def _payout(obj: dict[str, Any]) -> PayoutPaid:
    return PayoutPaid(_account(obj), _currency(obj), _amount(obj, "amount"))


def _dispute_id(obj: dict[str, Any]) -> str:
    return _text(obj, "id", "dispute: data.object.id")


def _dispute_created(obj: dict[str, Any]) -> DisputeCreated:
    return DisputeCreated(_account(obj), _currency(obj), _dispute_id(obj), _amount(obj, "amount"))


def _dispute_closed(obj: dict[str, Any]) -> DisputeClosed:
    status = obj.get("status")
    if status not in ("won", "lost"):
        raise PermanentError(f"charge.dispute.closed: unsupported status {status!r}")
    return DisputeClosed(_account(obj), _currency(obj), _dispute_id(obj), won=status == "won")


_BUILDERS: dict[str, Callable[[dict[str, Any]], LedgerCommand]] = {
    "payment_intent.succeeded": _payment,
    "charge.refunded": _refund,
    "payout.paid": _payout,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}
