"""The event log: every verified event, whichever handlers take it; body hashes for dedup.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per (source, event id), written by the event-log subscription, which has no
-- filter: an event no handler takes is still kept and can be found.
CREATE TABLE event_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL,
    event_id      text NOT NULL,
    event_type    text,
    received_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    content_type  text,
    body_sha256   bytea,
    body_bytes    integer,
    message_id    text,
    UNIQUE (source, event_id)
);
CREATE INDEX event_log_recorded_at ON event_log (recorded_at);
CREATE INDEX event_log_source_id ON event_log (source, id);

-- Events processed before the log existed: their hash is unknown (NULL matches any body).
INSERT INTO event_log (source, event_id, event_type, received_at, recorded_at, message_id)
SELECT source, event_id, event_type, processed_at, processed_at, message_id
FROM inbox ORDER BY id;

-- A redelivery whose body differs from the first is a conflict, never a silent duplicate.
ALTER TABLE inbox ADD COLUMN body_sha256 bytea;
"""

DOWNGRADE = """
ALTER TABLE inbox DROP COLUMN body_sha256;
DROP TABLE event_log;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
