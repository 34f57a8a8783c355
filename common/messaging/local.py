"""The local broker speaks the Pub/Sub REST shape (`topics/{t}:publish`) over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from common.errors import PublishError
from common.lazy import Lazy
from common.messaging.publisher import OutboundMessage
from common.oidc import TokenProvider


def publish_path(project: str, topic: str) -> str:
    return f"/emulator/pubsub/v1/projects/{project}/topics/{topic}:publish"


class LocalPublisher:
    """`token` supplies the bearer token the broker's API requires (the stack's own)."""

    def __init__(
        self, base_url: str, project: str, timeout_s: float, token: TokenProvider | None = None
    ) -> None:
        self._base = base_url.rstrip("/")
        self._project = project
        self._timeout = timeout_s
        self._token = token
        self._client = Lazy(self._build)

    def _build(self) -> httpx.Client:
        """One pooled client for every thread: building one costs milliseconds (TLS context)."""
        return httpx.Client(
            base_url=self._base,
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> str:
        return self.publish_many(topic, [OutboundMessage(data, attributes, ordering_key)])[0]

    def publish_many(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        """One request, all or nothing, as a Pub/Sub REST publish call."""
        wire = []
        for m in messages:
            item: dict[str, Any] = {
                "data": base64.b64encode(m.data).decode("ascii"),
                "attributes": dict(m.attributes),
            }
            if m.ordering_key:
                item["orderingKey"] = m.ordering_key
            wire.append(item)
        try:
            response = self._post(publish_path(self._project, topic), {"messages": wire})
        except httpx.HTTPError as exc:
            raise PublishError(f"local broker unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PublishError(f"local broker answered {response.status_code}")
        ids = response.json().get("messageIds") or []
        if len(ids) != len(messages):
            raise PublishError("local broker returned too few message ids")
        return [str(i) for i in ids]

    @retry(
        retry=retry_if_exception_type(httpx.ConnectError),
        stop=stop_after_attempt(3) | stop_after_delay(2),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Only connection failures are retried: the request never reached the broker."""
        headers = {"Authorization": f"Bearer {self._token()}"} if self._token else None
        return self._client.get().post(path, json=body, headers=headers)
