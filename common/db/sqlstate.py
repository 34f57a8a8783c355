"""Which database errors no retry can fix, read from PostgreSQL's SQLSTATE."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from common.errors import PermanentError

DATA_EXCEPTION = "22"
"""Class 22: a value out of range, an invalid text representation, an untranslatable
character. The same message fails the same way every time."""


def server_error(exc: BaseException) -> dict[str, str]:
    """The fields of a server-reported error (pg8000 keeps them in a dict keyed by protocol
    letter: `C` the SQLSTATE, `M` the message), else empty."""
    return driver_error(exc.orig if isinstance(exc, DBAPIError) else None)


def driver_error(orig: BaseException | None) -> dict[str, str]:
    """`server_error` for the driver's own exception, before SQLAlchemy wraps it."""
    fields = orig.args[0] if orig is not None and orig.args else None
    if not isinstance(fields, dict):
        return {}
    return {k: v for k, v in fields.items() if isinstance(k, str) and isinstance(v, str)}


def as_permanent(exc: BaseException) -> PermanentError | None:
    fields = server_error(exc)
    code = fields.get("C", "")
    if not code.startswith(DATA_EXCEPTION):
        return None
    return PermanentError(f"the database refused a value ({code}: {fields.get('M', '')})"[:500])
