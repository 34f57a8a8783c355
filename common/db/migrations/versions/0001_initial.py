"""Accounts, inbox, double-entry ledger, per-charge refund state and dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE accounts (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,128}$'),
    currency    text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    notify_url  text,
    available   bigint NOT NULL DEFAULT 0,
    held        bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (source, event id) ever processed: the idempotency key of every effect.
CREATE TABLE inbox (
    source        text NOT NULL,
    event_id      text NOT NULL,
    event_type    text,
    subscription  text NOT NULL,
    message_id    text,
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'ignored')),
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

CREATE TABLE ledger_transactions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id),
    kind        text NOT NULL,
    currency    text NOT NULL,
    source      text NOT NULL,
    event_id    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (source, event_id) REFERENCES inbox (source, event_id)
);
CREATE INDEX ledger_transactions_account ON ledger_transactions (account_id, id);

-- ledger_account names a balance: 'account:<id>:available', 'account:<id>:held',
-- 'platform:clearing', 'platform:payouts'. A transaction's postings sum to zero.
CREATE TABLE postings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  bigint NOT NULL REFERENCES ledger_transactions (id),
    ledger_account  text NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    currency        text NOT NULL
);
CREATE INDEX postings_transaction ON postings (transaction_id);
CREATE INDEX postings_ledger_account ON postings (ledger_account);

-- Refunds arrive as a cumulative amount per charge; this remembers how much was applied.
CREATE TABLE charges (
    id                text PRIMARY KEY,
    account_id        text NOT NULL REFERENCES accounts (id),
    refunded_applied  bigint NOT NULL DEFAULT 0 CHECK (refunded_applied >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin           text NOT NULL CHECK (origin IN ('worker', 'broker')),
    subscription     text NOT NULL,
    message_id       text NOT NULL,
    source           text,
    event_id         text,
    event_type       text,
    data             bytea NOT NULL,
    attributes       jsonb NOT NULL DEFAULT '{}',
    delivery_count   integer NOT NULL DEFAULT 1,
    error_class      text,
    error_message    text,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'replaying', 'replayed', 'discarded')),
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription, message_id)
);
CREATE INDEX dead_letters_state ON dead_letters (state, id);
CREATE INDEX dead_letters_source ON dead_letters (source, id);
"""

DOWNGRADE = """
DROP TABLE dead_letters;
DROP TABLE charges;
DROP TABLE postings;
DROP TABLE ledger_transactions;
DROP TABLE inbox;
DROP TABLE accounts;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
