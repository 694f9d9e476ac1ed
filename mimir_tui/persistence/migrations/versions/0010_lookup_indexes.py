"""Schema version 10: an index on the run queue's ``execution_id``, and status indexes that
give a filtered page its order.

A queued run is known by the execution id chosen when it was queued: ``executions show`` and
``executions cancel`` of a run still in the queue, ``jobs run --wait``, and the dashboard's
execution screen look it up by that id. Without an index each look read the whole queue, which
a backlog (a paused instance, a burst of retries) makes long, on every backend. Not unique: a
database upgraded from an earlier version is not checked for ids queued twice.

A page of history filtered by status (``executions list --status success``, the Executions
pane's filter) is ordered newest first. With ``(status)`` alone, a database without planner
statistics read every run of that status through it and sorted them: 35 ms for a page of 50
among 200,000 runs on SQLite, growing with the history. ``(status, start_time, id)`` reads the
page in order; ``(job_id, status, start_time, id)`` does the same for one job's page, and still
serves counting a job's queued and running runs (version 5).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: (old name, old columns, new name, new columns): each new one is made before its old one goes.
STATUS_INDEXES = (
    (
        "idx_job_executions_status",
        ["status"],
        "idx_job_executions_status_start_time_id",
        ["status", "start_time", "id"],
    ),
    (
        "idx_job_executions_job_id_status",
        ["job_id", "status"],
        "idx_job_executions_job_id_status_start_time_id",
        ["job_id", "status", "start_time", "id"],
    ),
)


def upgrade() -> None:
    op.create_index("idx_run_queue_execution_id", "run_queue", ["execution_id"])
    for old, _, new, columns in STATUS_INDEXES:
        op.create_index(new, "job_executions", columns)
        op.drop_index(old, table_name="job_executions")


def downgrade() -> None:
    for old, columns, new, _ in STATUS_INDEXES:
        op.create_index(old, "job_executions", columns)
        op.drop_index(new, table_name="job_executions")
    op.drop_index("idx_run_queue_execution_id", table_name="run_queue")
