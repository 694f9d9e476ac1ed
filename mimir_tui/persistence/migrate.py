"""Schema versions: Alembic revisions under ``migrations/versions``, applied at start.

Upgrading is automatic and idempotent. Several instances starting at once on one database
take turns: an advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, and a
``BEGIN IMMEDIATE`` transaction around the whole upgrade on SQLite (whose DDL is
transactional, so a failed upgrade leaves the previous schema intact).
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from ..errors import PersistenceError
from .engine import WRITE

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when there is something to do (an upgrade, an unknown version): it
# costs a command a third of its start-up, and a database at the head revision needs none of it.

log = logging.getLogger("mimir.persistence")

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6D696D6972  # "mimir"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*(?:#.*)?$", re.MULTILINE)
_QUOTED = re.compile(r"""(['"])([^'"]+)\1""")


@functools.lru_cache(maxsize=1)
def _head_from_files() -> str | None:
    """The head revision read from the ``revision = "..."`` and ``down_revision = "..."`` lines of
    the version files, without Alembic; None unless they make one plain chain with one head
    (then :func:`upgrade` asks Alembic). tests/unit/test_cli_imports.py checks that it agrees
    with :func:`head_revision`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        rev = _QUOTED.fullmatch(found.get("revision", ""))
        down = found.get("down_revision")
        if rev is None or down is None or rev.group(2) in revisions:
            return None
        revisions.add(rev.group(2))
        if down != "None":
            parent = _QUOTED.fullmatch(down)
            if parent is None:  # a tuple: a merge, or anything else unusual
                return None
            parents.add(parent.group(2))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    if revision == "head":
        # The common case, first and without Alembic or a lock: already at the head.
        quick = _head_from_files()
        if quick is not None:
            with engine.connect() as conn:
                if current_revision(conn) == quick:
                    return quick
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
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except Exception:
        raise PersistenceError(
            f"the database has schema version {current!r}, newer than this Mimir knows "
            f"(up to {head_revision()!r}); upgrade Mimir"
        ) from None


def _run(conn: Connection, revision: str) -> None:
    from alembic import command

    log.info("upgrading database schema to %s", revision)
    command.upgrade(alembic_config(conn), revision)
    if conn.in_transaction():
        conn.commit()
