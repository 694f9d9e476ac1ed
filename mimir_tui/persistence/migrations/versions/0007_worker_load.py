"""Schema version 7: workers.capacity and workers.running (the load each instance reports).

An instance whose run slots are all taken leaves a schedule's fire, for a few seconds, to a
peer that reported free slots at its last heartbeat (``scheduler.defer_when_busy``).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as t:
        t.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
        t.add_column(sa.Column("running", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as t:
        t.drop_column("running")
        t.drop_column("capacity")
