"""The emulator's REST publish endpoint, the shape `common.messaging.local` speaks.

`POST /emulator/pubsub/v1/projects/{project}/topics/{topic}:publish` with
`{"messages": [{"data": b64, "attributes": {...}, "orderingKey": "..."}]}` answers
`{"messageIds": [...]}` once every message of the request is committed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import flask
from sqlalchemy.exc import SQLAlchemyError

from common import bounded_json
from common.errors import BadRequest, MethodNotAllowed, NotFound, Problem, ServiceUnavailable
from common.http import problem_response, read_body
from common.logging import get_logger
from common.storable import attributes_problem
from hookyard.broker.broker import Broker
from hookyard.broker.store import NewMessage

log = get_logger(__name__)

_PUBLISH_PATH = re.compile(
    r"^/emulator/pubsub/v1/projects/(?P<project>[^/]+)/topics/(?P<topic>[^/:]+):publish$"
)
# 10 MB of payload, base64-inflated by 4/3, plus JSON framing and attributes.
_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Pub/Sub's own limits (reference: "Limits"), refused as it refuses them.
MAX_MESSAGE_BYTES = 10 * 1000 * 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024


def handle_publish(broker: Broker, request: flask.Request) -> flask.Response:
    try:
        if request.method != "POST":
            raise MethodNotAllowed("publish is POST only")
        match = _PUBLISH_PATH.match(request.path)
        if match is None or match["project"] != broker.project:
            raise NotFound("no such topic in this project")
        messages = _parse_messages(read_body(request, _MAX_REQUEST_BYTES))
        ids = broker.publish_many(match["topic"], messages)
    except Problem as exc:
        return problem_response(exc, request.path)
    except SQLAlchemyError as exc:
        log.error("pubsub publish failed", error=type(exc).__name__)
        return problem_response(
            ServiceUnavailable("the broker could not store the messages"), request.path
        )
    return flask.Response(json.dumps({"messageIds": ids}), status=200, mimetype="application/json")


def _parse_messages(raw: bytes) -> list[NewMessage]:
    try:
        doc = bounded_json.loads(raw)
    except bounded_json.JsonTooDeep as exc:
        raise BadRequest(f"request body: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("request body is not valid JSON") from exc
    items = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest("messages must be a non-empty list")
    return [_parse_message(i, item) for i, item in enumerate(items)]


def _parse_message(index: int, item: Any) -> NewMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object")
    encoded = item.get("data", "")
    if not isinstance(encoded, str):
        raise BadRequest(f"{where}.data must be a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise BadRequest(f"{where}.data is not valid base64") from exc
    attributes = item.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise BadRequest(f"{where}.attributes must map strings to strings")
    ordering_key = item.get("orderingKey") or ""
    if not isinstance(ordering_key, str):
        raise BadRequest(f"{where}.orderingKey must be a string")
    _check_limits(where, data, attributes, ordering_key)
    return NewMessage(data, attributes, ordering_key)


def _check_limits(where: str, data: bytes, attributes: dict[str, str], ordering_key: str) -> None:
    if (found := attributes_problem({**attributes, "orderingKey": ordering_key})) is not None:
        name, reason = found
        raise BadRequest(f"{where}: {reason}: {name!r}")
    if not data and not attributes:
        raise BadRequest(f"{where} needs data or at least one attribute")
    if len(attributes) > MAX_ATTRIBUTES:
        raise BadRequest(f"{where} has more than {MAX_ATTRIBUTES} attributes")
    for key, value in attributes.items():
        if not key or len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES or key.startswith("goog"):
            raise BadRequest(
                f"{where}: attribute keys are 1-{MAX_ATTRIBUTE_KEY_BYTES} bytes, not goog*"
            )
        if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            raise BadRequest(f"{where}: attribute values are at most 1024 bytes: {key!r}")
    if len(ordering_key.encode()) > MAX_ORDERING_KEY_BYTES:
        raise BadRequest(f"{where}.orderingKey is longer than 1024 bytes")
    size = len(data) + sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    if size > MAX_MESSAGE_BYTES:
        raise BadRequest(f"{where} exceeds Pub/Sub's 10 MB message limit")
