"""RFC 6901 JSON pointers: how topology.yaml says where an event's id or type lives."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def resolve(document: Any, pointer: str) -> Any:
    """The value at `pointer`, or None when any step is missing."""
    node = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token, _MISSING)
        elif (
            isinstance(node, list)
            and token.isascii()
            and token.isdigit()
            and int(token) < len(node)
        ):
            node = node[int(token)]
        else:
            return None
        if node is _MISSING:
            return None
    return node
