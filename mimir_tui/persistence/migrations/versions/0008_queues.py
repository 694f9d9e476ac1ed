"""Schema version 8: named queues route work to the instances that serve them.

``scheduled_jobs.queue`` and ``run_queue.queue`` (default ``default``) name the queue a job's
runs go to; ``workers.queues`` lists the queues an instance serves (comma-separated), so that
an instance with a GPU fires and claims only the jobs of the ``gpu`` queue, say.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("scheduled_jobs", "run_queue"):
        with op.batch_alter_table(table) as t:
            t.add_column(sa.Column("queue", sa.String(64), nullable=False, server_default="default"))
    with op.batch_alter_table("workers") as t:
        t.add_column(sa.Column("queues", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as t:
        t.drop_column("queues")
    for table in ("run_queue", "scheduled_jobs"):
        with op.batch_alter_table(table) as t:
            t.drop_column("queue")
