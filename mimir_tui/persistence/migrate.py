"""Schema versions: Alembic revisions under ``migrations/versions``, applied at start.

Upgrading is automatic and idempotent. Several instances starting at once on one database
take turns: an advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, and a
``BEGIN IMMEDIATE`` transaction around the whole upgrade on SQLite (whose DDL is
transactional, so a failed upgrade leaves the previous schema intact).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from ..errors import PersistenceError
from .engine import WRITE

log = logging.getLogger("mimir.persistence")

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6D696D6972  # "mimir"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    target = head_revision() if revision == "head" else revision
    dialect = engine.dialect.name
    with engine.execution_options(**WRITE).connect() as conn:
        if dialect == "sqlite":
            with conn.begin():
                current = current_revision(conn)
                if current != target:
                    _check_known(current)
                    _run(conn, revision)
            return target
        # Quick look first: nothing to do is the common case, and needs no lock.
        with conn.begin():
            current = current_revision(conn)
        if current == target:
            return target
        _check_known(current)
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
        else:
            got = conn.execute(text("SELECT GET_LOCK('mimir_schema_upgrade', 120)")).scalar()
            conn.commit()
            if got != 1:
                raise PersistenceError("timed out waiting for another instance to upgrade the schema")
        try:
            with conn.begin():
                current = current_revision(conn)
            if current != target:
                _run(conn, revision)
        finally:
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            else:
                conn.execute(text("SELECT RELEASE_LOCK('mimir_schema_upgrade')"))
            conn.commit()
    return target


def _check_known(current: str | None) -> None:
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except Exception:
        raise PersistenceError(
            f"the database has schema version {current!r}, newer than this Mimir knows "
            f"(up to {head_revision()!r}); upgrade Mimir"
        ) from None


def _run(conn: Connection, revision: str) -> None:
    log.info("upgrading database schema to %s", revision)
    command.upgrade(alembic_config(conn), revision)
    if conn.in_transaction():
        conn.commit()
