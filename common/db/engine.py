"""One SQLAlchemy engine per process, on pg8000 (TCP, Unix socket or the Cloud SQL connector)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from common.config import Settings, get_settings
from common.db import pg8000_dialect
from common.db.sqlstate import driver_error
from common.errors import ConfigError

STATEMENT_TIMEOUT_MS = 30_000
SOCKET_TIMEOUT_S = STATEMENT_TIMEOUT_MS / 1000 + 15
"""pg8000's timeout bounds every socket read, not only the connect: it must outlast the
server's statement_timeout, so a slow statement ends cleanly on the server's side instead
of mid-reply on ours."""

sa.dialects.registry.register(
    f"postgresql.{pg8000_dialect.NAME}", pg8000_dialect.__name__, "Pg8000Dialect"
)

_engine: Engine | None = None
_lock = threading.Lock()


def create_db_engine(
    settings: Settings, url: str | None = None, *, asynchronous_commit: bool = False
) -> Engine:
    """`asynchronous_commit`: a commit returns before its WAL reaches the disk. Only for
    writes whose loss in a crash is redone anyway (a lease, an ack: the message is delivered
    again and its consumer dedupes), never for an effect or an accepted message."""
    kwargs: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": 30,
        "pool_recycle": 1800,
        # No ping per checkout (a round trip before every transaction): a connection the
        # server dropped fails its first statement instead, that request is retried by its
        # caller (a 503 to Pub/Sub, Cloud Tasks or the operator), and the pool discards every
        # connection older than the failure (`discard_connections_on_error`).
        "pool_pre_ping": False,
    }
    target = url or settings.database_url
    if target is None and settings.cloud_sql_instance:
        engine = sa.create_engine(
            f"postgresql+{pg8000_dialect.NAME}://", creator=_cloud_sql_creator(settings), **kwargs
        )
    elif target is None:
        raise ConfigError("HOOKYARD_DATABASE_URL is not set")
    else:
        connect_args: dict[str, Any] = {"timeout": SOCKET_TIMEOUT_S}
        if "unix_sock=" in target:
            # A Unix socket has no TLS: without this pg8000 builds a TLS context (loading the
            # system's CA bundle) and asks the server for TLS on every new connection.
            connect_args["ssl_context"] = False
        engine = sa.create_engine(_with_our_dialect(target), connect_args=connect_args, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _session_defaults(dbapi_conn: Any, _record: Any) -> None:
        # Outside a transaction: SET inside one is undone by the pool's reset-on-return.
        dbapi_conn.autocommit = True
        try:
            cur = dbapi_conn.cursor()
            cur.execute(
                f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; "
                "SET idle_in_transaction_session_timeout = 60000; SET TIME ZONE 'UTC'"
                + ("; SET synchronous_commit = off" if asynchronous_commit else "")
            )
            cur.close()
        finally:
            dbapi_conn.autocommit = False

    discard_connections_on_error(engine)
    return engine


def _with_our_dialect(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql+pg8000":
        return parsed.set(drivername=f"postgresql+{pg8000_dialect.NAME}")
    return parsed


def discard_connections_on_error(engine: Engine) -> None:
    """A connection that saw an exception inside a transaction is closed, never reused.

    pg8000 can raise on the client after it has sent part of a statement (a parameter it
    cannot encode, a timeout mid-read): the next reply on that socket then belongs to the
    wrong statement, and a pooled connection in that state once committed one event's inbox
    row without its effects. Closing the socket makes the server abort the transaction, so
    nothing of it can commit; the pool opens a fresh connection for the next caller.

    A lost server (a restart, a failover, sessions terminated) drops every pooled connection
    at once: then the whole pool is discarded, so only one request finds out the hard way.
    """

    @sa.event.listens_for(engine, "handle_error")
    def _during_execution(context: sa.engine.ExceptionContext) -> None:
        context.invalidate_pool_on_disconnect = context.is_disconnect or _server_gone(
            context.original_exception
        )
        context.is_disconnect = True

    @sa.event.listens_for(engine, "rollback")
    def _while_unwinding(conn: Connection) -> None:
        # A rollback that runs while an exception propagates (a `with engine.begin()` block
        # that raised) discards the connection instead of trusting its protocol state.
        if sys.exc_info()[1] is not None and not conn.invalidated:
            conn.invalidate()


SERVER_GONE_SQLSTATES = ("08", "57P")
"""Connection exceptions, and the server shutting down or terminating the session."""


def _server_gone(exc: BaseException) -> bool:
    return driver_error(exc).get("C", "").startswith(SERVER_GONE_SQLSTATES)


def _cloud_sql_creator(settings: Settings) -> Any:
    """Lazy refresh suits Cloud Run, where CPU is throttled outside requests.

    The password and the connector (which looks up credentials) are read per connection,
    not when the engine is built: a secret-store or credentials failure then surfaces inside
    a request, where it is a 503, and a rotated password is picked up after the cache TTL.
    """
    from common.lazy import Lazy
    from common.secrets import get_secret_store

    instance = settings.cloud_sql_instance
    if instance is None:
        raise ConfigError("HOOKYARD_CLOUD_SQL_INSTANCE is not set")

    def build_connector() -> Any:
        from google.cloud.sql.connector import Connector

        return Connector(refresh_strategy="lazy", ip_type=settings.cloud_sql_ip_type)

    connector: Lazy[Any] = Lazy(build_connector)

    def connect() -> Any:
        password = next(iter(get_secret_store().values("db-password")), None)
        return connector.get().connect(
            instance,
            "pg8000",
            user=settings.db_user,
            password=password,
            db=settings.db_name,
            enable_iam_auth=password is None,
        )

    return connect


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = create_db_engine(get_settings())
    return _engine


def set_engine(engine: Engine | None) -> None:
    """The local stack and tests install the engine they built for their own database."""
    global _engine
    with _lock:
        _engine = engine


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Connection]:
    with (engine or get_engine()).begin() as conn:
        yield conn


@contextmanager
def single_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for work that is ONE statement, which PostgreSQL runs atomically by
    itself: no BEGIN and no COMMIT, so one round trip instead of three. Anything that needs
    two statements to stand or fall together belongs in `engine.begin()` instead."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")
