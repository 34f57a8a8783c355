from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import migrate
from tests.support.postgres import TestServer


def test_fresh_database_migrates_to_head_and_back(pg_server: TestServer) -> None:
    name = pg_server.create_database(migrated=False)
    engine = pg_server.engine(name)
    try:
        assert not migrate.is_current(engine)
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
        migrate.upgrade(engine)  # a second run is a no-op
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            from alembic import command

            command.downgrade(cfg, "base")
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        assert tables <= {"alembic_version"}
    finally:
        engine.dispose()
        pg_server.drop_database(name)


def test_template_clone_is_current(engine: Engine) -> None:
    assert migrate.is_current(engine)


def test_session_defaults_survive_pool_reuse(engine: Engine) -> None:
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "30s"
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"
