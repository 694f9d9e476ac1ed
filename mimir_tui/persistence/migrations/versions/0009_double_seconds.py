"""Schema version 9: a job's seconds (timeout, retry backoff, misfire grace) in double precision.

Version 2 declared them ``Float``, which MySQL/MariaDB take as a 4-byte FLOAT: a timeout of
3600.123 s read back as 3600.12, and a migration or restore between backends found the job
rows different. PostgreSQL's ``FLOAT`` and SQLite's ``REAL`` are 8 bytes already; there this
version changes nothing.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    ("timeout_seconds", True, None),
    ("retry_backoff_seconds", False, "30"),
    ("misfire_grace_seconds", False, "60"),
)


def _retype(kind) -> None:  # noqa: ANN001 - a type or a function making one
    if op.get_bind().dialect.name != "mysql":
        return
    for name, nullable, default in COLUMNS:
        op.alter_column(
            "scheduled_jobs",
            name,
            type_=kind(),
            existing_nullable=nullable,
            existing_server_default=default,
        )


def upgrade() -> None:
    _retype(lambda: sa.Float(53))


def downgrade() -> None:
    _retype(sa.Float)
