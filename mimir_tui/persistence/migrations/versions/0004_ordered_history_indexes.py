"""Schema version 4: history indexes end with id, so newest-first pages need no sort.

``list_executions`` orders by ``start_time DESC, id DESC`` (id breaks ties, and keyset paging
needs a total order). With ``id`` in the index, the database reads the page straight from the
index instead of sorting the rows of a start_time range.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New first: on MySQL/MariaDB the foreign key on job_id needs an index at all times.
    op.create_index("idx_job_executions_job_id_start_time_id", "job_executions", ["job_id", "start_time", "id"])
    op.create_index("idx_job_executions_start_time_id", "job_executions", ["start_time", "id"])
    op.drop_index("idx_job_executions_job_id_start_time", table_name="job_executions")
    op.drop_index("idx_job_executions_start_time", table_name="job_executions")


def downgrade() -> None:
    op.create_index("idx_job_executions_job_id_start_time", "job_executions", ["job_id", "start_time"])
    op.create_index("idx_job_executions_start_time", "job_executions", ["start_time"])
    op.drop_index("idx_job_executions_job_id_start_time_id", table_name="job_executions")
    op.drop_index("idx_job_executions_start_time_id", table_name="job_executions")
