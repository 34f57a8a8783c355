-- The local Pub/Sub emulator's own state. Not an Alembic migration: it belongs to the
-- emulator, never exists in GCP, and is created idempotently each time a broker starts.

CREATE SCHEMA IF NOT EXISTS emulator;

CREATE TABLE IF NOT EXISTS emulator.messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    data          bytea NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    ordering_key  text NOT NULL DEFAULT '',
    publish_time  timestamptz NOT NULL DEFAULT now()
);

-- One row per (subscription, message): each subscription owns its copy of a message.
-- due_at is when the row next needs attention: the next attempt while pending, the end of
-- the lease while inflight (a lease that runs out is a failed attempt).
-- ordering_key is copied from the message only for subscriptions with message ordering,
-- so '' always means "no per-key constraint".
CREATE TABLE IF NOT EXISTS emulator.deliveries (
    subscription     text NOT NULL,
    message_id       bigint NOT NULL REFERENCES emulator.messages (id) ON DELETE CASCADE,
    ordering_key     text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'inflight', 'acked', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    due_at           timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    PRIMARY KEY (subscription, message_id)
);

CREATE INDEX IF NOT EXISTS deliveries_due
    ON emulator.deliveries (due_at, message_id)
    WHERE state IN ('pending', 'inflight');

CREATE INDEX IF NOT EXISTS deliveries_ordering_head
    ON emulator.deliveries (subscription, ordering_key, message_id)
    WHERE state IN ('pending', 'inflight') AND ordering_key <> '';

-- Pub/Sub's push backoff, per subscription without a retry policy: after its streak-th nack
-- in a row nothing of the subscription is pushed before paused_until; an ack ends the streak.
CREATE TABLE IF NOT EXISTS emulator.push_backoff (
    subscription  text PRIMARY KEY,
    streak        integer NOT NULL DEFAULT 0 CHECK (streak >= 0),
    paused_at     timestamptz NOT NULL DEFAULT now(),
    paused_until  timestamptz NOT NULL DEFAULT now()
);
