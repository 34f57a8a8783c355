"""Scheduled jobs: daily closing balances, reconciliation findings, retention indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per account and closed UTC day; the statement writer upserts, so a re-run of the
-- same day rewrites the same row.
CREATE TABLE daily_balances (
    account_id   text NOT NULL REFERENCES accounts (id),
    date         date NOT NULL,
    currency     text NOT NULL,
    available    bigint NOT NULL,
    held         bigint NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, date)
);
CREATE INDEX daily_balances_date ON daily_balances (date);

-- Each reconcile run, clean or not: a mismatch is a finding to show, not a job failure.
CREATE TABLE reconciliations (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_time  timestamptz NOT NULL,
    ok             boolean NOT NULL,
    checked_at     timestamptz NOT NULL DEFAULT now(),
    problems       jsonb NOT NULL DEFAULT '[]'
);

-- Retention asks "is this inbox row referenced by the ledger?" once per candidate row.
CREATE INDEX ledger_transactions_event ON ledger_transactions (source, event_id);
CREATE INDEX outbox_settled_created ON outbox (created_at)
    WHERE state IN ('delivered', 'skipped', 'disabled');
CREATE INDEX delivery_failures_last_failed ON delivery_failures (last_failed_at);
"""

DOWNGRADE = """
DROP INDEX delivery_failures_last_failed;
DROP INDEX outbox_settled_created;
DROP INDEX ledger_transactions_event;
DROP TABLE reconciliations;
DROP TABLE daily_balances;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
