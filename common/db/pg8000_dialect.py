"""pg8000 with fewer round trips: the dialect every engine built by `create_db_engine` uses.

pg8000 sends each statement with parameters in three round trips (Parse, Describe, then
Bind and Execute, each followed by a Sync), numbers its parameters by scanning its text in
Python on every execution (about 0.6 ms for the ledger's statement), and commits the same
way. This dialect commits and rolls back with the simple protocol, one round trip each, and
runs a statement marked with `prepared` as a named statement: parsed and planned once per
connection, then one round trip per execution. Switching a connection to autocommit and back
(`single_statement`) costs nothing on the wire unless the session's isolation level really
changes: SQLAlchemy's dialect sends `SET SESSION CHARACTERISTICS` and a COMMIT, two round
trips, at every check-in of such a connection. Everything else is pg8000's dialect as is.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pg8000.converters import make_params
from pg8000.dbapi import IntegrityError, ProgrammingError, convert_paramstyle
from pg8000.exceptions import DatabaseError, InterfaceError
from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000
from sqlalchemy.sql.elements import TextClause

NAME = "hookyard_pg8000"
_PREPARED = "hookyard_prepared"
_STATEMENTS = "hookyard_prepared_statements"
_SESSION_LEVEL = "_hookyard_session_isolation"


def prepared(sql: str) -> TextClause:
    """`sa.text` for a hot statement, prepared once per connection. Only for fixed SQL: each
    distinct text stays prepared for the life of every connection that ran it."""
    return sa.text(sql).execution_options(**{_PREPARED: True})


class Pg8000Dialect(PGDialect_pg8000):
    supports_statement_cache = True

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        level = level.replace("_", " ").upper()
        if level == "AUTOCOMMIT":
            dbapi_connection.autocommit = True
            return
        # A new session runs at the server's default, which is what SQLAlchemy read as ours.
        session = getattr(dbapi_connection, _SESSION_LEVEL, None) or self.default_isolation_level
        if session is not None and level == session.replace("_", " ").upper():
            dbapi_connection.autocommit = False
            return
        super().set_isolation_level(dbapi_connection, level)  # type: ignore[no-untyped-call]
        setattr(dbapi_connection, _SESSION_LEVEL, level)

    def do_commit(self, dbapi_connection: Any) -> None:
        if dbapi_connection._in_transaction:
            dbapi_connection.execute_simple("commit")

    def do_rollback(self, dbapi_connection: Any) -> None:
        if dbapi_connection._in_transaction:
            dbapi_connection.execute_simple("rollback")

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if context is None or not context.execution_options.get(_PREPARED):
            super().do_execute(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]
            return
        # The rest mirrors pg8000.legacy.Cursor.execute, with a named statement.
        proxied = context.root_connection.connection
        conn = proxied.dbapi_connection
        statements: dict[str, tuple[str, bytes, Any, Any]] = proxied.info.setdefault(
            _STATEMENTS, {}
        )
        try:
            if not conn._in_transaction and not conn.autocommit:
                conn.execute_simple("begin transaction")
            found = statements.get(statement)
            if found is None:
                sql, _ = convert_paramstyle("format", statement, parameters)
                found = statements[statement] = (sql, *conn.prepare_statement(sql, ()))
            sql, name, columns, input_funcs = found
            params = make_params(conn.py_types, parameters)
            result = conn.execute_named(name, params, columns, input_funcs, sql)
        except AttributeError as exc:
            if conn._sock is None:
                raise InterfaceError("connection is closed") from exc
            raise
        except DatabaseError as exc:
            raise _as_cursor_raises(exc) from exc
        cursor._context = result
        cursor._row_iter = iter(() if result.rows is None else result.rows)


def _as_cursor_raises(exc: DatabaseError) -> Exception:
    """The exception class pg8000's cursor would have raised for this server error."""
    fields = exc.args[0] if exc.args else None
    code = fields.get("C") if isinstance(fields, dict) else None
    cls: type[Exception] = ProgrammingError
    if code == "28000":
        cls = InterfaceError
    elif code == "23505":
        cls = IntegrityError
    return cls(fields)
