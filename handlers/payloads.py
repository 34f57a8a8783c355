"""Reading a sender's payload into a typed model: a payload that does not fit is permanent."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from common.errors import PermanentError
from workers.plugin import Event

M = TypeVar("M", bound=BaseModel)


def read(event: Event, model: type[M]) -> M:
    """The payload as `model`, or a `PermanentError` naming the first field that is wrong
    (never its value: payloads may carry personal data)."""
    try:
        return model.model_validate(event.json())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise PermanentError(f"{event.source} {event.type}: {where}: {first['msg']}") from None
