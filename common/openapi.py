"""The OpenAPI 3.1 description of every HTTP surface, completed from the topology when served.

One YAML file is the contract; the enums of sources and subscriptions come from
`topology.yaml` so the document can never advertise an endpoint that does not exist.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from common.topology import Source, Topology


@lru_cache(maxsize=1)
def _base() -> dict[str, Any]:
    text = files("common").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def openapi_document(topology: Topology, *, include_emulator: bool = True) -> dict[str, Any]:
    document = copy.deepcopy(_base())
    paths: dict[str, Any] = document["paths"]
    template = paths.pop("/webhooks/{source}")["post"]
    for source in topology.sources:
        paths[f"/webhooks/{source.name}"] = {"post": _source_operation(template, source)}
    subscriptions = [s.push_path.rsplit("/", 1)[-1] for s in topology.subscriptions]
    _enum(paths["/pubsub/{subscription}"]["post"], "subscription", subscriptions)
    _enum(paths["/tasks/{queue}"]["post"], "queue", [q.name for q in topology.queues])
    _enum(paths["/cron/{job}"]["post"], "job", [j.name for j in topology.jobs])
    if topology.handlers:
        _enum(paths["/admin/events"]["get"], "handler", [h.name for h in topology.handlers])
    if not include_emulator:
        for path in [p for p in paths if p.startswith("/emulator/")]:
            del paths[path]
    return document


def _source_operation(template: dict[str, Any], source: Source) -> dict[str, Any]:
    """One operation per source: its media types, its response shape, its size limit."""
    operation = copy.deepcopy(template)
    operation["operationId"] = f"receiveWebhook_{source.name.replace('-', '_')}"
    operation["summary"] = f"{source.name}: {source.scheme} signature, {template['summary']}"
    del operation["parameters"]
    content = operation["requestBody"]["content"]
    operation["requestBody"]["content"] = {t: content[t] for t in source.content_types}
    operation["description"] += (
        f"\nBodies over {source.max_body_bytes} bytes are refused with 413 before they are read."
    )
    accepted = operation["responses"]["202"]["content"]
    kept = "text/xml" if source.response == "twiml" else "application/json"
    operation["responses"]["202"]["content"] = {kept: accepted[kept]}
    if source.scheme != "slack":
        del operation["responses"]["200"]
    return operation


def _enum(operation: dict[str, Any], name: str, values: list[str]) -> None:
    for parameter in operation["parameters"]:
        if parameter["name"] == name:
            parameter["schema"] = {"type": "string", "enum": values}
