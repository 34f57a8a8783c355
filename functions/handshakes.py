"""Requests a sender makes to prove the endpoint is theirs: answered, never published."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from common.http import json_response
from common.webhook_body import ParsedBody

Handshake = Callable[[ParsedBody], Response | None]


def slack_url_verification(parsed: ParsedBody) -> Response | None:
    doc = parsed.document
    if isinstance(doc, dict) and doc.get("type") == "url_verification":
        challenge = doc.get("challenge")
        if isinstance(challenge, str):
            return json_response({"challenge": challenge})
    return None


HANDSHAKES: dict[str, Handshake] = {"slack": slack_url_verification}
