"""Schema version 5: an index on (job_id, status), so counting a job's active runs is cheap.

``count_running`` (``WHERE job_id = ? AND status IN ('queued', 'running')``) runs on every fire.
With only the (job_id, start_time, id) index it read every row of the job's history; with
(job_id, status) it reads just the queued and running ones.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_job_executions_job_id_status", "job_executions", ["job_id", "status"])


def downgrade() -> None:
    op.drop_index("idx_job_executions_job_id_status", table_name="job_executions")
