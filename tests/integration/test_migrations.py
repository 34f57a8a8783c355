from __future__ import annotations

import pytest
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


def test_disputes_keep_their_openings_across_0008(pg_server: TestServer) -> None:
    """0008 lets a close come first; existing disputes stay opened, and going back forgets
    only the closes whose opening never came."""
    from alembic import command

    name = pg_server.create_database(migrated=False)
    engine = pg_server.engine(name)
    cfg = migrate.alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")
            conn.execute(sa.text("INSERT INTO accounts (id, currency) VALUES ('a', 'usd')"))
            conn.execute(
                sa.text(
                    "INSERT INTO disputes (id, account_id, amount, status, opened_by)"
                    " VALUES ('dp_old', 'a', 5, 'open', 'e1')"
                )
            )
            command.upgrade(cfg, "0008")
            opened = conn.execute(
                sa.text("SELECT opened_at = created_at FROM disputes WHERE id = 'dp_old'")
            ).scalar_one()
            assert opened is True
            conn.execute(
                sa.text(
                    "INSERT INTO disputes (id, account_id, status, closed_by)"
                    " VALUES ('dp_early', 'a', 'lost', 'e2')"
                )
            )
            command.downgrade(cfg, "0007")
            kept = conn.execute(sa.text("SELECT id FROM disputes")).scalars().all()
        assert kept == ["dp_old"]
    finally:
        engine.dispose()
        pg_server.drop_database(name)


def test_an_open_dispute_needs_its_amount(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO accounts (id, currency) VALUES ('a', 'usd')"))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="open_once_opened"):
        conn.execute(
            sa.text(
                "INSERT INTO disputes (id, account_id, status, closed_by)"
                " VALUES ('dp', 'a', 'open', 'e')"
            )
        )
