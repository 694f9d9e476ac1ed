"""Schema version 2: what Mimir's scheduler, engine and pipeline loader need.

- scheduled_jobs: description, timezone, timeout, retry policy, misfire policy, concurrency, priority
- pipelines: enabled, source file, checksum, last load error
- job_executions: job_id nullable (pipeline runs outside any job), scheduled_for, attempt,
  worker_id, cancel_requested, updated_at; unique run key (job_id, scheduled_for)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from mimir_tui.persistence.types import LongText, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs") as t:
        t.add_column(sa.Column("description", LongText(), nullable=True))
        t.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        t.add_column(sa.Column("timeout_seconds", sa.Float(), nullable=True))
        t.add_column(sa.Column("max_retries", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(sa.Column("retry_backoff_seconds", sa.Float(), nullable=False, server_default="30"))
        t.add_column(sa.Column("misfire_policy", sa.String(16), nullable=False, server_default="once"))
        t.add_column(sa.Column("misfire_grace_seconds", sa.Float(), nullable=False, server_default="60"))
        t.add_column(sa.Column("misfire_cap", sa.Integer(), nullable=False, server_default="10"))
        t.add_column(sa.Column("max_concurrent", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    # Never recreate scheduled_jobs on SQLite: dropping a parent table with foreign_keys=ON
    # cascades into job_executions. Only ADD COLUMN (an in-place ALTER) touches it.

    with op.batch_alter_table("pipelines") as t:
        t.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
        t.add_column(sa.Column("source_path", LongText(), nullable=True))
        t.add_column(sa.Column("checksum", sa.String(64), nullable=True))
        t.add_column(sa.Column("load_error", LongText(), nullable=True))

    with op.batch_alter_table("job_executions") as t:
        t.alter_column("job_id", existing_type=sa.String(255), nullable=True)
        t.add_column(sa.Column("scheduled_for", UTCDateTime(), nullable=True))
        t.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("worker_id", sa.String(128), nullable=True))
        t.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        t.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))
    op.create_index("ux_job_executions_run_key", "job_executions", ["job_id", "scheduled_for"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_job_executions_run_key", table_name="job_executions")
    with op.batch_alter_table("job_executions") as t:
        for name in ("updated_at", "cancel_requested", "worker_id", "attempt", "scheduled_for"):
            t.drop_column(name)
    with op.batch_alter_table("pipelines") as t:
        for name in ("load_error", "checksum", "source_path", "enabled"):
            t.drop_column(name)
    with op.batch_alter_table("scheduled_jobs") as t:
        for name in (
            "priority",
            "max_concurrent",
            "misfire_cap",
            "misfire_grace_seconds",
            "misfire_policy",
            "retry_backoff_seconds",
            "max_retries",
            "timeout_seconds",
            "timezone",
            "description",
        ):
            t.drop_column(name)
