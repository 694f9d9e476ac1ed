"""Vacuum, analyze, integrity checks and storage statistics of the database, on every backend:
what ``mimir-tui db stats|check|vacuum|analyze`` and the Vacuum screen call.

- SQLite: ``VACUUM`` (then ``PRAGMA optimize``), ``ANALYZE``; behind the write gate like every
  other writer (a VACUUM rewrites the whole file: Mimir's writers wait for it, up to their
  ``busy_timeout_ms``); the WAL truncated afterwards so the sizes say what the file holds.
  ``check``: ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``.
- PostgreSQL: ``VACUUM (ANALYZE)`` / ``ANALYZE`` of Mimir's tables on an autocommit connection.
  ``check``: amcheck's ``bt_index_check`` on every index when the extension is installed (it is
  never installed by Mimir), else a read of every row of every table; and index validity from
  ``pg_index``.
- MariaDB/MySQL: ``OPTIMIZE TABLE`` / ``ANALYZE TABLE``; ``check``: ``CHECK TABLE``.

Imports no Textual. One operation at a time in a process (:class:`Busy`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from ..errors import Conflict, DatabaseCorrupt, PersistenceError
from ..persistence.db import is_damaged

Progress = Callable[[str], None]

OPERATIONS = ("vacuum", "analyze", "check")

_running = threading.Lock()
_running_name: list[str] = []


class Busy(Conflict):
    """Another vacuum, analyze or check runs in this process already."""


def _quiet(_message: str) -> None:
    pass


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tables(backend: Any) -> list[str]:
    """Mimir's tables (every table of its database or schema), sorted."""
    return sorted(inspect(backend.engine).get_table_names())


def _quote(backend: Any, name: str) -> str:
    return str(backend.engine.dialect.identifier_preparer.quote(name))


def size_bytes(backend: Any) -> int:
    """The database's size: SQLite's file and its WAL; a server's own figure for the database."""
    return int(backend.size_bytes())


# -- stats -------------------------------------------------------------------------------------


def database_stats(backend: Any) -> dict[str, Any]:
    """Sizes, pages and free pages, rows per table, the size of each table and index.

    ``{"backend", "database", "size_bytes", "page_size", "pages", "free_pages", "free_bytes",
    "tables": [{"name", "rows", "bytes", "index_bytes"}], "indexes": [{"name", "table",
    "bytes"}], "index_sizes": "ok" | why not}``; a figure a backend does not have is None."""
    report: dict[str, Any] = {"backend": backend.dialect, "database": backend.url, "size_bytes": size_bytes(backend)}
    tables = _tables(backend)
    if backend.dialect == "sqlite":
        report.update(_sqlite_stats(backend, tables))
    elif backend.dialect == "postgresql":
        report.update(_postgres_stats(backend, tables))
    else:
        report.update(_mysql_stats(backend, tables))
    return report


def _sqlite_stats(backend: Any, tables: list[str]) -> dict[str, Any]:
    path = Path(backend.settings.database_path)
    out: dict[str, Any] = {"database_bytes": _file_size(path), "wal_bytes": _file_size(Path(f"{path}-wal"))}
    with backend.db.driver() as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        rows = {t: conn.execute(f"SELECT count(*) FROM {_quote(backend, t)}").fetchone()[0] for t in tables}
        index_of = dict(
            conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name").fetchall()
        )
        sizes: dict[str, int] | None
        try:
            sizes = {n: int(s) for n, s in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")}
            note = "ok"
        except Exception as exc:  # sqlite3.OperationalError: no such table: dbstat
            sizes, note = None, f"unavailable: this SQLite has no dbstat table ({exc})"
    out.update(
        page_size=page_size,
        pages=pages,
        free_pages=free,
        free_bytes=free * page_size,
        index_sizes=note,
        tables=[
            {
                "name": t,
                "rows": rows[t],
                "bytes": sizes.get(t) if sizes is not None else None,
                "index_bytes": sum(sizes.get(i, 0) for i, tb in index_of.items() if tb == t) if sizes else None,
            }
            for t in tables
        ],
        indexes=[
            {"name": i, "table": tb, "bytes": sizes.get(i) if sizes is not None else None}
            for i, tb in index_of.items()
            if tb in rows
        ],
    )
    return out


def _postgres_stats(backend: Any, tables: list[str]) -> dict[str, Any]:
    with backend.db.read() as conn:
        block = int(conn.execute(text("SELECT current_setting('block_size')::int")).scalar() or 8192)
        per_table = []
        for t in tables:
            q = _quote(backend, t)
            rows = conn.execute(text(f"SELECT count(*) FROM {q}")).scalar()
            heap, idx, dead = conn.execute(
                text(
                    "SELECT pg_table_size(c.oid), pg_indexes_size(c.oid), COALESCE(s.n_dead_tup, 0) "
                    "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                    "WHERE c.oid = to_regclass(:t)"
                ),
                {"t": q},
            ).one()
            per_table.append(
                {"name": t, "rows": rows, "bytes": int(heap), "index_bytes": int(idx), "dead_rows": int(dead)}
            )
        indexes = [
            {"name": name, "table": table, "bytes": int(size)}
            for name, table, size in conn.execute(
                text(
                    "SELECT i.relname, t.relname, pg_relation_size(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                    "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = current_schema() "
                    "ORDER BY i.relname"
                )
            )
        ]
    total = sum(t["bytes"] + t["index_bytes"] for t in per_table)
    return {
        "page_size": block,
        "pages": total // block,
        "free_pages": None,  # PostgreSQL keeps free space per page (dead rows), not as a list of pages
        "free_bytes": None,
        "dead_rows": sum(t["dead_rows"] for t in per_table),
        "index_sizes": "ok",
        "tables": per_table,
        "indexes": indexes,
    }


def _mysql_stats(backend: Any, tables: list[str]) -> dict[str, Any]:
    with backend.db.read() as conn:
        page = int(conn.execute(text("SELECT @@innodb_page_size")).scalar() or 16384)
        info = {
            name: (int(data or 0), int(index or 0), int(free or 0))
            for name, data, index, free in conn.execute(
                text(
                    "SELECT table_name, data_length, index_length, data_free FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()"
                )
            )
        }
        per_table = []
        for t in tables:
            rows = conn.execute(text(f"SELECT count(*) FROM {_quote(backend, t)}")).scalar()
            data, index, _ = info.get(t, (0, 0, 0))
            per_table.append({"name": t, "rows": rows, "bytes": data, "index_bytes": index})
        try:
            indexes = [
                {"name": name, "table": table, "bytes": int(pages) * page}
                for table, name, pages in conn.execute(
                    text(
                        "SELECT table_name, index_name, stat_value FROM mysql.innodb_index_stats "
                        "WHERE database_name = DATABASE() AND stat_name = 'size' ORDER BY table_name, index_name"
                    )
                )
            ]
            note = "ok"
        except Exception as exc:  # no read access to mysql.innodb_index_stats
            indexes, note = [], f"unavailable: {str(exc).splitlines()[0][:120]}"
    total = sum(d + i for d, i, _ in info.values())
    free = sum(f for _, _, f in info.values())
    return {
        "page_size": page,
        "pages": total // page,
        "free_pages": free // page,
        "free_bytes": free,
        "index_sizes": note,
        "tables": per_table,
        "indexes": indexes,
    }


# -- check -------------------------------------------------------------------------------------


def check_database(backend: Any, progress: Progress = _quiet) -> dict[str, Any]:
    """The integrity checks: ``{"ok": bool, "checks": [what ran], "problems": [each found]}``."""
    with _exclusive("check"):
        started = time.monotonic()
        if backend.dialect == "sqlite":
            checks, problems = _sqlite_check(backend, progress)
        elif backend.dialect == "postgresql":
            checks, problems = _postgres_check(backend, progress)
        else:
            checks, problems = _mysql_check(backend, progress)
        return {
            "operation": "check",
            "backend": backend.dialect,
            "database": backend.url,
            "ok": not problems,
            "checks": checks,
            "problems": problems,
            "seconds": round(time.monotonic() - started, 3),
        }


def _sqlite_check(backend: Any, progress: Progress) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    with backend.db.driver() as conn:
        progress("integrity_check")
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            found = [str(r[0]) for r in rows]
            if found != ["ok"]:
                problems += [f"integrity_check: {line}" for line in found]
        except Exception as exc:  # a page so damaged SQLite stops reading
            problems.append(f"integrity_check: {str(exc).splitlines()[0]}")
        progress("foreign_key_check")
        try:
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall():
                problems.append(f"foreign_key_check: {table} row {rowid} names a missing {parent} row")
        except Exception as exc:
            problems.append(f"foreign_key_check: {str(exc).splitlines()[0]}")
    return ["integrity_check", "foreign_key_check"], problems


def _postgres_check(backend: Any, progress: Progress) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    checks: list[str] = []
    tables = _tables(backend)
    with backend.db.read() as conn:
        amcheck = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).first() is not None
        indexes = conn.execute(
            text(
                "SELECT i.relname, x.indisvalid AND x.indisready, a.amname = 'btree', i.oid FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "JOIN pg_am a ON a.oid = i.relam JOIN pg_namespace n ON n.oid = t.relnamespace "
                "WHERE n.nspname = current_schema() ORDER BY i.relname"
            )
        ).all()
        progress("index validity")
        checks.append("index validity (pg_index)")
        problems += [
            f"index {name} is not valid (a failed CREATE INDEX CONCURRENTLY?)" for name, ok, _, _ in indexes if not ok
        ]
        if amcheck:
            checks.append("amcheck bt_index_check")
            for name, ok, btree, oid in indexes:
                if not (ok and btree):
                    continue
                progress(f"bt_index_check {name}")
                try:
                    with conn.begin_nested():
                        conn.execute(text("SELECT bt_index_check(:oid)"), {"oid": oid})
                except Exception as exc:
                    problems.append(f"bt_index_check {name}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
        checks.append("read of every row")
        for t in tables:
            progress(f"reading {t}")
            try:
                with conn.begin_nested():
                    conn.execute(text(f"SELECT sum(length(r::text)) FROM {_quote(backend, t)} AS r")).scalar()
            except Exception as exc:
                problems.append(f"reading {t}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    return checks, problems


def _mysql_check(backend: Any, progress: Progress) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    with backend.db.read() as conn:
        for t in _tables(backend):
            progress(f"CHECK TABLE {t}")
            for _, _, kind, message in conn.execute(text(f"CHECK TABLE {_quote(backend, t)}")).all():
                kind = str(kind).lower()
                if kind == "error" or (kind == "status" and str(message) not in ("OK", "Table is already up to date")):
                    problems.append(f"CHECK TABLE {t}: {message}")
    return ["CHECK TABLE"], problems


# -- vacuum and analyze ------------------------------------------------------------------------


def vacuum(backend: Any, progress: Progress = _quiet) -> dict[str, Any]:
    """Reclaim free space and refresh the planner's statistics; sizes before and after."""
    return _maintain(backend, "vacuum", progress)


def analyze(backend: Any, progress: Progress = _quiet) -> dict[str, Any]:
    """Refresh the planner's statistics."""
    return _maintain(backend, "analyze", progress)


def _maintain(backend: Any, what: str, progress: Progress) -> dict[str, Any]:
    with _exclusive(what):
        before = size_bytes(backend)
        started = time.monotonic()
        try:
            if backend.dialect == "sqlite":
                _sqlite_maintain(backend, what, progress)
            elif backend.dialect == "postgresql":
                _postgres_maintain(backend, what, progress)
            else:
                _mysql_maintain(backend, what, progress)
        except (PersistenceError, DatabaseCorrupt):
            raise
        except Exception as exc:
            detail = backend.db.describe(exc)
            if is_damaged(exc):
                raise backend.db.damaged(detail, what) from None
            raise PersistenceError(f"{what} failed: {detail}") from None
        after = size_bytes(backend)
        return {
            "operation": what,
            "backend": backend.dialect,
            "database": backend.url,
            "size_before": before,
            "size_after": after,
            "reclaimed_bytes": max(0, before - after),
            "seconds": round(time.monotonic() - started, 3),
        }


def _sqlite_maintain(backend: Any, what: str, progress: Progress) -> None:
    gate = backend.db.gate
    if gate is not None:
        progress("waiting for the writers")
        gate.__enter__()
    try:
        with backend.db.driver() as conn:
            if what == "vacuum":
                progress("VACUUM")
                conn.execute("VACUUM")
                progress("PRAGMA optimize")
                conn.execute("PRAGMA optimize")
            else:
                progress("ANALYZE")
                conn.execute("ANALYZE")
                conn.execute("PRAGMA optimize")
            progress("checkpoint")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        if gate is not None:
            gate.__exit__(None, None, None)


def _postgres_maintain(backend: Any, what: str, progress: Progress) -> None:
    names = ", ".join(_quote(backend, t) for t in _tables(backend))
    statement = f"VACUUM (ANALYZE) {names}" if what == "vacuum" else f"ANALYZE {names}"
    with backend.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        progress(statement.split(" ", 1)[0] if what == "analyze" else "VACUUM ANALYZE")
        conn.execute(text(statement))


def _mysql_maintain(backend: Any, what: str, progress: Progress) -> None:
    verb = "OPTIMIZE TABLE" if what == "vacuum" else "ANALYZE TABLE"
    with backend.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for t in _tables(backend):
            progress(f"{verb} {t}")
            for _, _, kind, message in conn.execute(text(f"{verb} {_quote(backend, t)}")).all():
                if str(kind).lower() == "error":
                    raise PersistenceError(f"{verb} {t}: {message}")


class _exclusive:
    """One maintenance operation at a time in this process (:class:`Busy` otherwise)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        if not _running.acquire(blocking=False):
            current = _running_name[0] if _running_name else "a maintenance operation"
            raise Busy(f"cannot start {self.what}: {current} is running already")
        _running_name[:] = [self.what]

    def __exit__(self, *exc: object) -> None:
        _running_name.clear()
        _running.release()


def running() -> str | None:
    """The maintenance operation running in this process, if any."""
    return _running_name[0] if _running_name else None
