"""A dispute can be closed before it is opened.

Senders do not promise order, and a close can arrive long after its subscription's retries
would have given up waiting for the opening. The close is recorded instead (a row with its
outcome and no amount yet) and the opening, whenever it comes, applies the net effect. Such
a row has neither `opened_by` nor `amount` until then, and is never `open`.

Downgrading forgets closes whose opening never arrived: the old schema cannot hold them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE disputes ALTER COLUMN amount DROP NOT NULL;
ALTER TABLE disputes ALTER COLUMN opened_by DROP NOT NULL;
ALTER TABLE disputes ADD COLUMN opened_at timestamptz;
UPDATE disputes SET opened_at = created_at;
ALTER TABLE disputes ADD CONSTRAINT disputes_opened_with_amount
    CHECK ((opened_by IS NULL) = (amount IS NULL) AND (opened_by IS NULL) = (opened_at IS NULL));
ALTER TABLE disputes ADD CONSTRAINT disputes_open_once_opened
    CHECK (opened_by IS NOT NULL OR status <> 'open');
"""

DOWNGRADE = """
DELETE FROM disputes WHERE opened_by IS NULL;
ALTER TABLE disputes DROP CONSTRAINT disputes_open_once_opened;
ALTER TABLE disputes DROP CONSTRAINT disputes_opened_with_amount;
ALTER TABLE disputes DROP COLUMN opened_at;
ALTER TABLE disputes ALTER COLUMN opened_by SET NOT NULL;
ALTER TABLE disputes ALTER COLUMN amount SET NOT NULL;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
