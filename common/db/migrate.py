"""Alembic, driven from code: the stack migrates at start and readiness checks the revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        # One migrator at a time when several processes start together.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727272)")
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def main() -> None:
    """`python -m common.db.migrate`: the deployed image has no `hookyard migrate` (no CLI),
    so a one-off job runs this with the targets' settings before a new revision serves."""
    from common.db.engine import get_engine

    engine = get_engine()
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")


if __name__ == "__main__":
    main()
