-- The local Cloud Tasks emulator's own state, beside the Pub/Sub emulator's in `emulator`.
-- Not an Alembic migration: it never exists in GCP and is created idempotently each time
-- a task emulator installs.

CREATE SCHEMA IF NOT EXISTS emulator;

-- One row per task name and queue, for as long as the name is taken: while the task is
-- pending or inflight, and as a tombstone (state 'deleted', body dropped) after it
-- succeeded, was exhausted or was purged, until the tombstone window has passed. Keeping
-- the tombstone in the same row lets one INSERT ... ON CONFLICT decide ALREADY_EXISTS
-- under the row lock, with no window between "checked" and "created".
-- due_at is when the row next needs attention: the next attempt while pending, the end of
-- the lease while inflight (a lease that runs out is a failed attempt).
-- attempts counts finished attempts (X-CloudTasks-TaskRetryCount of the next one);
-- responses counts the HTTP responses among them (the task's response_count), executions
-- those that were not 5xx (X-CloudTasks-TaskExecutionCount, which leaves 5xx out).
CREATE TABLE IF NOT EXISTS emulator.tasks (
    queue             text NOT NULL,
    name              text NOT NULL,
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'inflight', 'deleted')),
    body              bytea NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}'::jsonb,
    schedule_time     timestamptz NOT NULL,
    create_time       timestamptz NOT NULL DEFAULT now(),
    due_at            timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    responses         integer NOT NULL DEFAULT 0 CHECK (responses >= 0),
    executions        integer NOT NULL DEFAULT 0 CHECK (executions >= 0),
    first_attempt_at  timestamptz,
    last_attempt_at   timestamptz,
    last_status       integer,
    last_error        text,
    deleted_at        timestamptz,
    outcome           text CHECK (outcome IN ('succeeded', 'exhausted', 'purged', 'deleted')),
    url               text,
    http_method       text NOT NULL DEFAULT 'POST',
    oidc_email        text,
    oidc_audience     text,
    dispatch_deadline_s integer,
    PRIMARY KEY (queue, name),
    CHECK ((state = 'deleted') = (deleted_at IS NOT NULL))
);

-- Tables created before executions was counted apart from responses.
ALTER TABLE emulator.tasks
    ADD COLUMN IF NOT EXISTS executions integer NOT NULL DEFAULT 0 CHECK (executions >= 0);

-- Tables created before tasks said where they go (CreateTask's http_request). A task with
-- no url is one created without saying: it goes to its queue's worker path with the
-- stack's own token. No oidc_email means no Authorization header, as in Cloud Tasks; no
-- dispatch_deadline_s means the queue's.
ALTER TABLE emulator.tasks
    ADD COLUMN IF NOT EXISTS url text,
    ADD COLUMN IF NOT EXISTS http_method text NOT NULL DEFAULT 'POST',
    ADD COLUMN IF NOT EXISTS oidc_email text,
    ADD COLUMN IF NOT EXISTS oidc_audience text,
    ADD COLUMN IF NOT EXISTS dispatch_deadline_s integer;

-- Tables created before DeleteTask tombstoned a name with the outcome 'deleted'.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'emulator.tasks'::regclass AND conname = 'tasks_outcome_check'
          AND position('deleted' IN pg_get_constraintdef(oid)) > 0
    ) THEN
        ALTER TABLE emulator.tasks DROP CONSTRAINT IF EXISTS tasks_outcome_check;
        ALTER TABLE emulator.tasks ADD CONSTRAINT tasks_outcome_check
            CHECK (outcome IN ('succeeded', 'exhausted', 'purged', 'deleted'));
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS tasks_due
    ON emulator.tasks (queue, due_at)
    WHERE state IN ('pending', 'inflight');

CREATE INDEX IF NOT EXISTS tasks_tombstones
    ON emulator.tasks (deleted_at)
    WHERE state = 'deleted';

-- Only queues whose state was ever changed have a row; no row means RUNNING, as in the
-- topology. A pause outlives the emulator that set it, as it outlives a Cloud Tasks call.
CREATE TABLE IF NOT EXISTS emulator.task_queues (
    name        text PRIMARY KEY,
    state       text NOT NULL DEFAULT 'RUNNING' CHECK (state IN ('RUNNING', 'PAUSED')),
    purge_time  timestamptz
);
