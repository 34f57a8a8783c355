"""Replays, the operator audit trail, and the last error of every failing delivery.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE inbox ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX inbox_id ON inbox (id);

CREATE TABLE replays (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state             text NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'done', 'cancelled')),
    dry_run           boolean NOT NULL DEFAULT false,
    total             integer NOT NULL,
    done              integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    max_per_second    double precision NOT NULL,
    reason            text NOT NULL,
    actor             text NOT NULL,
    selection         jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);

ALTER TABLE dead_letters
    ADD COLUMN replay_id bigint REFERENCES replays (id),
    ADD COLUMN replay_of bigint REFERENCES dead_letters (id);
CREATE INDEX dead_letters_replay ON dead_letters (replay_id, state, id);
CREATE INDEX dead_letters_failed_at ON dead_letters (last_failed_at);

-- Every mutating operator call, with who made it and why.
CREATE TABLE operator_actions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor              text NOT NULL,
    token_fingerprint  text NOT NULL,
    action             text NOT NULL,
    reason             text NOT NULL,
    params             jsonb NOT NULL,
    result             jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The worker's last transient failure per delivery, so a message the broker later
-- dead-letters shows why it kept failing.
CREATE TABLE delivery_failures (
    subscription     text NOT NULL,
    message_id       text NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    error_class      text NOT NULL,
    error_message    text NOT NULL,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, message_id)
);
"""

DOWNGRADE = """
DROP TABLE delivery_failures;
DROP TABLE operator_actions;
DROP INDEX dead_letters_failed_at;
DROP INDEX dead_letters_replay;
ALTER TABLE dead_letters DROP COLUMN replay_of, DROP COLUMN replay_id;
DROP TABLE replays;
DROP INDEX inbox_id;
ALTER TABLE inbox DROP COLUMN id;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
