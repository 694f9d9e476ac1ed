"""Schema version 6: workers.instance_key (kernel boot id and pid namespace).

At start an instance recovers at once the runs of a crashed predecessor on its host whose pid
is gone. A pid is only meaningful within one boot and one pid namespace: containers that share
a hostname (a fixed ``hostname:``, ``network_mode: host``) must not judge each other's pids.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as t:
        t.add_column(sa.Column("instance_key", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as t:
        t.drop_column("instance_key")
