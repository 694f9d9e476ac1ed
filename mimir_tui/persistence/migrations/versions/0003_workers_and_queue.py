"""Schema version 3: instances (workers) with heartbeats, and the run queue.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from mimir_tui.persistence.types import UTCDateTime, mysql_table_options

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    options = mysql_table_options(op.get_bind())
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        **options,
    )
    op.create_index("idx_workers_heartbeat_at", "workers", ["heartbeat_at"])
    op.create_table(
        "run_queue",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(255), nullable=True),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("available_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("triggered_by", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["scheduled_jobs.id"], ondelete="CASCADE", name="fk_run_queue_job_id"),
        **options,
    )
    op.create_index("idx_run_queue_claim", "run_queue", ["priority", "available_at"])


def downgrade() -> None:
    op.drop_table("run_queue")
    op.drop_table("workers")
