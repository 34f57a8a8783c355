"""The Pub/Sub push envelope: what a push endpoint receives, and what the local broker sends."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common import bounded_json
from common.errors import BadRequest

MAX_DELIVERY_ATTEMPT = 2**31 - 1
"""Pub/Sub's `deliveryAttempt` is an int32."""
MAX_MESSAGE_ID_LENGTH = 256
MAX_PUSH_BYTES = 14 * 1024 * 1024
"""A push carries one message of at most 10 MB, base64-inflated by 4/3, plus the envelope."""


@dataclass(frozen=True, slots=True)
class PushMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str = ""
    ordering_key: str = ""


@dataclass(frozen=True, slots=True)
class PushEnvelope:
    subscription: str
    message: PushMessage
    delivery_attempt: int | None = None

    @property
    def short_subscription(self) -> str:
        return self.subscription.rsplit("/", 1)[-1]


def format_time(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as Pub/Sub writes publish times."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def build_envelope(
    *,
    project: str,
    subscription: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str],
    publish_time: datetime,
    ordering_key: str = "",
    delivery_attempt: int | None = None,
) -> dict[str, Any]:
    published = format_time(publish_time)
    message: dict[str, Any] = {
        "data": base64.b64encode(data).decode("ascii"),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if attributes:
        message["attributes"] = dict(attributes)
    if ordering_key:
        message["orderingKey"] = ordering_key
    body: dict[str, Any] = {
        "message": message,
        "subscription": f"projects/{project}/subscriptions/{subscription}",
    }
    if delivery_attempt is not None:
        body["deliveryAttempt"] = delivery_attempt
    return body


def parse_envelope(raw: bytes) -> PushEnvelope:
    """Strict enough to reject garbage with a 400, lenient on the fields Pub/Sub may omit."""
    try:
        doc = bounded_json.loads(raw)
    except bounded_json.JsonTooDeep as exc:
        raise BadRequest(f"push body: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("push body is not valid JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), dict):
        raise BadRequest("push body has no message object")
    msg = doc["message"]
    message_id = msg.get("messageId") or msg.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise BadRequest("message.messageId is missing")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH or not message_id.isprintable():
        raise BadRequest("message.messageId must be printable and at most 256 characters")
    try:
        data = base64.b64decode(msg.get("data") or "", validate=True)
    except (ValueError, TypeError) as exc:  # ValueError: binascii.Error, or text beyond ASCII
        raise BadRequest("message.data is not base64") from exc
    attributes = msg.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise BadRequest("message.attributes must map strings to strings")
    attempt = doc.get("deliveryAttempt")
    if attempt is not None and (
        isinstance(attempt, bool)
        or not isinstance(attempt, int)
        or not 1 <= attempt <= MAX_DELIVERY_ATTEMPT
    ):
        raise BadRequest("deliveryAttempt must be an integer from 1 to 2^31-1")
    return PushEnvelope(
        subscription=str(doc.get("subscription") or ""),
        message=PushMessage(
            message_id=message_id,
            data=data,
            attributes=attributes,
            publish_time=str(msg.get("publishTime") or msg.get("publish_time") or ""),
            ordering_key=str(msg.get("orderingKey") or ""),
        ),
        delivery_attempt=attempt,
    )
