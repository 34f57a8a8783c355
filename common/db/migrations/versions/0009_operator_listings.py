"""Indexes for the operators' lists.

An account's notification attempts are found through its outbox rows, which had an index
for pending rows only; the audit trail is read newest first and filtered by action.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX outbox_account ON outbox (account_id, id);
CREATE INDEX operator_actions_action ON operator_actions (action, id);
"""

DOWNGRADE = """
DROP INDEX operator_actions_action;
DROP INDEX outbox_account;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE)
