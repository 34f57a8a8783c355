"""One SQLAlchemy engine per process, on pg8000 (TCP, Unix socket or the Cloud SQL connector)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from common.config import Settings, get_settings
from common.errors import ConfigError

STATEMENT_TIMEOUT_MS = 30_000

_engine: Engine | None = None
_lock = threading.Lock()


def create_db_engine(settings: Settings, url: str | None = None) -> Engine:
    kwargs: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": 30,
        "pool_recycle": 1800,
        "pool_pre_ping": True,
    }
    target = url or settings.database_url
    if target is None and settings.cloud_sql_instance:
        engine = sa.create_engine(
            "postgresql+pg8000://", creator=_cloud_sql_creator(settings), **kwargs
        )
    elif target is None:
        raise ConfigError("HOOKYARD_DATABASE_URL is not set")
    else:
        engine = sa.create_engine(target, connect_args={"timeout": 10}, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _session_defaults(dbapi_conn: Any, _record: Any) -> None:
        # Outside a transaction: SET inside one is undone by the pool's reset-on-return.
        dbapi_conn.autocommit = True
        try:
            cur = dbapi_conn.cursor()
            cur.execute(
                f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; "
                "SET idle_in_transaction_session_timeout = 60000; SET TIME ZONE 'UTC'"
            )
            cur.close()
        finally:
            dbapi_conn.autocommit = False

    return engine


def _cloud_sql_creator(settings: Settings) -> Any:
    """Lazy refresh suits Cloud Run, where CPU is throttled outside requests."""
    from google.cloud.sql.connector import Connector

    from common.secrets import get_secret_store

    instance = settings.cloud_sql_instance
    if instance is None:
        raise ConfigError("HOOKYARD_CLOUD_SQL_INSTANCE is not set")
    connector = Connector(refresh_strategy="lazy")
    password = next(iter(get_secret_store().values("db-password")), None)

    def connect() -> Any:
        return connector.connect(
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
