from __future__ import annotations

from alembic import context

from common.db.engine import get_engine

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, transaction_per_migration=False)
    context.run_migrations()
else:
    engine = config.attributes.get("engine") or get_engine()
    with engine.begin() as conn:
        context.configure(connection=conn)
        context.run_migrations()
