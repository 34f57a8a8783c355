"""Dead letters by event: one pending row per (subscription, source, event id, error class).

A retry storm of one event used to leave one row per message; now failures fold into the
pending row of their event and reason, counted in `failure_count`. Messages that name no
event (poison bytes, tasks) keep the per-(subscription, message id) identity. Both identities
hold among pending rows only: a failure after its row was replayed or discarded is a new
problem and gets a new row, so replayed and discarded rows stay the record of what an
operator did.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE dead_letters
    ADD COLUMN failure_count bigint NOT NULL DEFAULT 1 CHECK (failure_count >= 1);

-- Rows of one event hold one message id each; the folded row takes the latest one's.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_subscription_message_id_key;

-- Pending duplicates fold into the oldest row, which takes the latest row's message (what a
-- replay republishes) and the whole group's counts and times. Replayed, replaying and
-- discarded rows are history that replays count and `replay_of` points at: left as they are.
CREATE TEMPORARY TABLE dead_letter_folds AS
SELECT id, first_value(id) OVER (
           PARTITION BY subscription, source, event_id, coalesce(error_class, '') ORDER BY id
       ) AS keep_id
FROM dead_letters
WHERE state = 'pending' AND source IS NOT NULL AND event_id IS NOT NULL;

UPDATE dead_letters AS kept SET
    failure_count   = g.failures,
    first_failed_at = g.first_failed_at,
    last_failed_at  = g.last_failed_at,
    delivery_count  = g.delivery_count,
    replay_of       = coalesce(kept.replay_of, g.replay_of),
    origin          = latest.origin,
    message_id      = latest.message_id,
    event_type      = latest.event_type,
    data            = latest.data,
    attributes      = latest.attributes,
    error_class     = latest.error_class,
    error_message   = latest.error_message
FROM (
    SELECT f.keep_id,
           sum(d.failure_count) AS failures,
           min(d.first_failed_at) AS first_failed_at,
           max(d.last_failed_at) AS last_failed_at,
           max(d.delivery_count) AS delivery_count,
           (array_agg(d.replay_of ORDER BY d.id) FILTER (WHERE d.replay_of IS NOT NULL))[1]
               AS replay_of,
           (array_agg(d.id ORDER BY d.last_failed_at DESC, d.id DESC))[1] AS latest_id
    FROM dead_letter_folds AS f JOIN dead_letters AS d ON d.id = f.id
    GROUP BY f.keep_id
    HAVING count(*) > 1
) AS g
JOIN dead_letters AS latest ON latest.id = g.latest_id
WHERE kept.id = g.keep_id;

UPDATE dead_letters SET replay_of = f.keep_id
FROM dead_letter_folds AS f
WHERE dead_letters.replay_of = f.id AND f.id <> f.keep_id;
UPDATE dead_letters SET replay_of = NULL WHERE replay_of = id;
DELETE FROM dead_letters AS d USING dead_letter_folds AS f WHERE d.id = f.id AND f.id <> f.keep_id;
DROP TABLE dead_letter_folds;

CREATE UNIQUE INDEX dead_letters_pending_event
    ON dead_letters (subscription, source, event_id, (coalesce(error_class, '')))
    WHERE state = 'pending' AND source IS NOT NULL AND event_id IS NOT NULL;
CREATE UNIQUE INDEX dead_letters_pending_message
    ON dead_letters (subscription, message_id)
    WHERE state = 'pending' AND (source IS NULL OR event_id IS NULL);
"""

# (subscription, message id) was unique in every state before: one row per message survives,
# a pending one when there is one, else the oldest; `replay_of` follows it.
DOWNGRADE = """
DROP INDEX dead_letters_pending_message;
DROP INDEX dead_letters_pending_event;

CREATE TEMPORARY TABLE dead_letter_folds AS
SELECT id, first_value(id) OVER (
           PARTITION BY subscription, message_id ORDER BY state = 'pending' DESC, id
       ) AS keep_id
FROM dead_letters;
UPDATE dead_letters SET replay_of = f.keep_id
FROM dead_letter_folds AS f
WHERE dead_letters.replay_of = f.id AND f.id <> f.keep_id;
UPDATE dead_letters SET replay_of = NULL WHERE replay_of = id;
DELETE FROM dead_letters AS d USING dead_letter_folds AS f WHERE d.id = f.id AND f.id <> f.keep_id;
DROP TABLE dead_letter_folds;

ALTER TABLE dead_letters
    ADD CONSTRAINT dead_letters_subscription_message_id_key UNIQUE (subscription, message_id);
ALTER TABLE dead_letters DROP COLUMN failure_count;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
