"""Schema version 1: the seed's three tables and indexes, as the original created them.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from mimir_tui.persistence.types import JSONText, LongText, UTCDateTime, mysql_table_options

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    options = mysql_table_options(op.get_bind())
    op.create_table(
        "scheduled_jobs",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("cron_expr", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("next_run", UTCDateTime(), nullable=True),
        sa.Column("last_run", UTCDateTime(), nullable=True),
        sa.Column("last_result", LongText(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        **options,
    )
    op.create_index("idx_scheduled_jobs_enabled_next_run", "scheduled_jobs", ["enabled", "next_run"])
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("description", LongText(), nullable=True),
        sa.Column("config", LongText(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        **options,
    )
    op.create_table(
        "job_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", LongText(), nullable=True),
        sa.Column("context", JSONText(), nullable=True),
        sa.Column("steps", JSONText(), nullable=True),
        sa.Column("triggered_by", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["scheduled_jobs.id"], ondelete="CASCADE", name="fk_job_executions_job_id"),
        **options,
    )
    op.create_index("idx_job_executions_job_id_start_time", "job_executions", ["job_id", "start_time"])
    op.create_index("idx_job_executions_start_time", "job_executions", ["start_time"])
    op.create_index("idx_job_executions_status", "job_executions", ["status"])


def downgrade() -> None:
    op.drop_table("job_executions")
    op.drop_table("pipelines")
    op.drop_table("scheduled_jobs")
