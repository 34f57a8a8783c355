"""Disputes, the transactional outbox and notification delivery attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per dispute: what was held, and how it ended (each state change happens once).
CREATE TABLE disputes (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id),
    charge_id   text,
    amount      bigint NOT NULL CHECK (amount >= 0),
    status      text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    opened_by   text NOT NULL,
    closed_by   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);

ALTER TABLE accounts ADD COLUMN notify_disabled_at timestamptz;

-- Written in the same transaction as the ledger change it announces.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (id),
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'skipped', 'disabled', 'failed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    enqueued_at   timestamptz,
    delivered_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unenqueued ON outbox (created_at) WHERE enqueued_at IS NULL;
CREATE INDEX outbox_account_pending ON outbox (account_id) WHERE state = 'pending';

CREATE TABLE notification_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id     bigint NOT NULL REFERENCES outbox (id),
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    url           text NOT NULL,
    status        integer,
    error         text,
    duration_ms   integer NOT NULL
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id);
"""

DOWNGRADE = """
DROP TABLE notification_attempts;
DROP TABLE outbox;
ALTER TABLE accounts DROP COLUMN notify_disabled_at;
DROP TABLE disputes;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
