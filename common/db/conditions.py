"""WHERE clauses built from the filters a caller gave, values always bound, never spliced.

Each condition is a SQL fragment with one `{}` where its value goes, and the value (None:
not given, so the condition is left out). The fragments are the repositories' own constant
text; only values come from outside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Condition = tuple[str, object | None]


def where(conditions: Iterable[Condition]) -> tuple[str, dict[str, Any]]:
    """(`a AND b ...` or `TRUE`, the bound values)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for fragment, value in conditions:
        if value is None:
            continue
        name = f"c{len(params)}"
        clauses.append(fragment.format(f":{name}"))
        params[name] = value
    return " AND ".join(clauses) or "TRUE", params
