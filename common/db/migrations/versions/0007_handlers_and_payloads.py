"""Handlers as plug-ins, and an event log that keeps the event itself.

The inbox is keyed per handler (its subscription): several handlers take one event, each
claims it once, and one failing never blocks or re-runs another. The ledger's transactions
name the handler whose inbox row they hang from.

The event log keeps the raw bytes, the selected sender headers (never a signature) and, for
search, the payload as jsonb plus a text-search vector. Both indexes are GIN: containment
(`@>`) for "this JSON path equals this value", and `@@` for full text. Retention and
erasure null the payload columns and keep the row, the proof the event was processed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE ledger_transactions ADD COLUMN subscription text NOT NULL DEFAULT 'ledger';
UPDATE ledger_transactions AS t SET subscription = i.subscription
FROM inbox AS i WHERE i.source = t.source AND i.event_id = t.event_id
  AND i.subscription <> 'ledger';
ALTER TABLE ledger_transactions ALTER COLUMN subscription DROP DEFAULT;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_source_event_id_fkey;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (subscription, source, event_id);
CREATE INDEX inbox_event ON inbox (source, event_id);
ALTER TABLE ledger_transactions ADD FOREIGN KEY (subscription, source, event_id)
    REFERENCES inbox (subscription, source, event_id);
-- What a handler reported it did: {"rows": n, "messages": [ids]}.
ALTER TABLE inbox ADD COLUMN effects jsonb;

ALTER TABLE event_log
    ADD COLUMN payload            bytea,
    ADD COLUMN payload_json       jsonb,
    ADD COLUMN headers            jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN search             tsvector,
    ADD COLUMN payload_erased_at  timestamptz,
    ADD COLUMN erase_reason       text;
CREATE INDEX event_log_payload_json ON event_log USING gin (payload_json jsonb_path_ops);
CREATE INDEX event_log_search ON event_log USING gin (search);
CREATE INDEX event_log_type ON event_log (event_type, id);
CREATE INDEX event_log_received_at ON event_log (received_at);
-- Retention finds payloads to erase per source, oldest first.
CREATE INDEX event_log_payload_age ON event_log (source, received_at) WHERE payload IS NOT NULL;

-- Messages a handler asks to publish, written with its effects and published after commit
-- (a sweep publishes what a crash left behind): the transactional outbox for topics.
CREATE TABLE outbound_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription  text NOT NULL,
    source        text NOT NULL,
    event_id      text NOT NULL,
    topic         text NOT NULL,
    data          bytea NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}',
    ordering_key  text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    message_id    text
);
CREATE INDEX outbound_messages_unpublished ON outbound_messages (created_at)
    WHERE published_at IS NULL;
CREATE INDEX outbound_messages_event ON outbound_messages (source, event_id);

-- The Shopify example handler's effect: one row per order line, reserved once.
CREATE TABLE stock_reservations (
    shop          text NOT NULL,
    order_id      text NOT NULL,
    line_item_id  text NOT NULL,
    sku           text,
    quantity      integer NOT NULL CHECK (quantity > 0),
    event_id      text NOT NULL,
    reserved_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, order_id, line_item_id)
);
CREATE INDEX stock_reservations_sku ON stock_reservations (sku);
"""

DOWNGRADE = """
DROP TABLE stock_reservations;
DROP TABLE outbound_messages;
DROP INDEX event_log_payload_age;
DROP INDEX event_log_received_at;
DROP INDEX event_log_type;
DROP INDEX event_log_search;
DROP INDEX event_log_payload_json;
ALTER TABLE event_log DROP COLUMN payload, DROP COLUMN payload_json, DROP COLUMN headers,
    DROP COLUMN search, DROP COLUMN payload_erased_at, DROP COLUMN erase_reason;
ALTER TABLE inbox DROP COLUMN effects;
ALTER TABLE ledger_transactions
    DROP CONSTRAINT ledger_transactions_subscription_source_event_id_fkey;
-- Rows of other handlers cannot live under the old one-row-per-event key.
DELETE FROM inbox AS i WHERE i.subscription <> 'ledger' AND NOT EXISTS (
    SELECT 1 FROM ledger_transactions AS t
    WHERE t.subscription = i.subscription AND t.source = i.source AND t.event_id = i.event_id);
DROP INDEX inbox_event;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (source, event_id);
ALTER TABLE ledger_transactions ADD FOREIGN KEY (source, event_id)
    REFERENCES inbox (source, event_id);
ALTER TABLE ledger_transactions DROP COLUMN subscription;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
