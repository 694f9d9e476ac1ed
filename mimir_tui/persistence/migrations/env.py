"""Alembic environment: always run on the connection Mimir hands over (never from a URL)."""

from alembic import context

from mimir_tui.persistence.models import SQLModel

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
