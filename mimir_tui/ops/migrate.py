"""Migration between backends: every Mimir table copied from the configured database to another
(SQLite, PostgreSQL or MariaDB/MySQL), from one snapshot of the source, then verified table by
table (row counts and checksums, :mod:`.tables`). The command line (``mimir-tui migrate``) and,
later, the dashboard call :func:`migrate`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..config import PersistenceSettings
from ..errors import BadInput, MimirError, PersistenceError
from ..persistence.engine import display_url, server_url
from ..secrets import mask_url
from . import tables

URL_FORMS = "sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://USER:PASSWORD@HOST:PORT/DB"


class TargetNotEmpty(MimirError):
    """The target holds Mimir rows already and ``force`` was not given."""


def target_settings(url: str, base: PersistenceSettings) -> PersistenceSettings:
    """The persistence settings of the database at ``url`` (the other settings, timeouts and pool,
    as ``base``); :class:`BadInput` naming the URL (password masked) if it is not one."""
    raw = url.strip()
    shown = mask_url(raw)
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise BadInput(f"--to {shown!r} is not a database URL (use {URL_FORMS})")
    if scheme in ("sqlite", "sqlite3", "sqlite+pysqlite"):
        path = rest[1:] if rest.startswith("/") else ""
        if not path or "?" in path:
            raise BadInput(
                f"--to {shown!r} names no database file (use sqlite:///relative/path or sqlite:////absolute/path)"
            )
        path = os.path.abspath(os.path.expanduser(path))
        return base.model_copy(update={"backend": "sqlite", "database_path": path, "connection_string": ""})
    if scheme.startswith("postgres"):
        backend = "postgres"
    elif scheme.startswith(("mysql", "mariadb")):
        backend = "mysql"
    else:
        raise BadInput(f"--to {shown!r}: unknown scheme {scheme!r} (use {URL_FORMS})")
    settings = base.model_copy(update={"backend": backend, "connection_string": raw})
    try:
        server_url(settings)
    except BadInput as exc:
        raise BadInput(str(exc).replace("persistence.connection_string", "--to", 1)) from None
    return settings


def same_database(a: PersistenceSettings, b: PersistenceSettings) -> bool:
    """Whether two settings name one database (the same file, or the same server database)."""
    if a.backend != b.backend:
        return False
    if a.backend == "sqlite":
        return os.path.realpath(a.database_path) == os.path.realpath(b.database_path)
    ua, ub = server_url(a), server_url(b)
    default = 5432 if a.backend == "postgres" else 3306
    return ((ua.host or "").lower(), ua.port or default, ua.database) == (
        (ub.host or "").lower(),
        ub.port or default,
        ub.database,
    )


@dataclass
class MigrationReport:
    """What was copied and what the target holds afterwards, table by table."""

    source: str
    target: str
    copied: dict[str, tables.TableSummary]
    found: dict[str, tables.TableSummary]
    cleared: dict[str, int] = field(default_factory=dict)  # rows deleted from the target first (--force)

    @property
    def problems(self) -> list[str]:
        return tables.compare(self.copied, self.found)

    @property
    def verified(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "verified": self.verified,
            "cleared": self.cleared,
            "tables": [
                {
                    "table": name,
                    "rows": self.copied[name].rows,
                    "sha256": self.copied[name].sha256,
                    "target_rows": self.found[name].rows,
                    "target_sha256": self.found[name].sha256,
                    "match": self.copied[name] == self.found[name],
                }
                for name in tables.TABLE_NAMES
            ],
            "problems": self.problems,
        }


def migrate(
    source: Any,
    target: Any,
    *,
    force: bool = False,
    batch: int = tables.DEFAULT_BATCH,
    progress: tables.Progress | None = None,
    on_start: Callable[[dict[str, int]], None] | None = None,
) -> MigrationReport:
    """Copy every Mimir table of the backend ``source`` into the backend ``target`` (both open,
    so at this Mimir's schema head), then read the target back and compare counts and
    checksums. A target that holds rows is refused (:class:`TargetNotEmpty`) unless ``force``:
    then its Mimir tables are emptied first, in one transaction. A failure midway raises
    :class:`PersistenceError` naming the table; the target then holds a partial copy."""
    source_name, target_name = display_url(source.settings), display_url(target.settings)
    try:
        tables.check_same_schema(tables.schema_revision(source), target)
        held = {name: n for name, n in tables.table_counts(target).items() if n}
        cleared: dict[str, int] = {}
        if held:
            if not force:
                rows = ", ".join(f"{n} in {name}" for name, n in held.items())
                raise TargetNotEmpty(
                    f"the target {target_name} is not empty ({rows}); --force replaces what its Mimir tables hold"
                )
            cleared = tables.clear_tables(target)
        try:
            copied = tables.copy_tables(source, target, batch=batch, progress=progress, on_start=on_start)
        except PersistenceError as exc:
            raise PersistenceError(
                f"migration to {target_name} failed: {exc}; the target holds a partial copy (run again with --force)"
            ) from None
        found = tables.table_summaries(target, batch=batch)
    except SQLAlchemyError as exc:
        raise PersistenceError(f"migration to {target_name} failed: {tables.describe(exc)}") from None
    return MigrationReport(source_name, target_name, copied, found, cleared)
