"""The database handle the stores share: the engine, what differs between the dialects, the
SQLite write gate, and two ways to run a statement.

- :meth:`Database.read` / :meth:`Database.write` give a SQLAlchemy ``Connection`` (a write one
  in a transaction, ``BEGIN IMMEDIATE`` on SQLite behind the write gate). Most operations use
  these.
- :meth:`Database.prepare` compiles a Core statement once for this dialect (a
  :class:`Prepared`), and :meth:`Database.fetch` / :meth:`Database.raw_write` run such
  statements on the driver's own connection. SQLAlchemy's execution costs some hundreds of
  microseconds a call, several times what SQLite spends saving one execution or reading a page
  of fifty, so the calls that run all the time (saving executions, claiming fires, pages of
  history) take this way, on every backend alike. Values go through the same bind and result
  processors SQLAlchemy would use (taken from the column types), so both ways write and read
  the same values.

Each statement is written once, in Core; what differs between the dialects is decided by the
flags of :class:`Dialect` (as APScheduler 4's SQLAlchemy data store does), not by SQL strings of
our own.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, literal, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ..config import PersistenceSettings
from ..errors import DatabaseCorrupt, MimirError, NotFound, PersistenceError
from .engine import BULK_CACHE_KIB, SQLITE_CACHE_KIB, WRITE, display_url, scrub
from .gate import WriteGate, write_gate
from .metrics import OperationMetrics
from .types import as_utc, utcnow

log = logging.getLogger("mimir.persistence")

F = TypeVar("F", bound=Callable[..., Any])

#: SQLite's default: a checkpoint at the commit that leaves the WAL over 1,000 pages.
WAL_AUTOCHECKPOINT = 1000


@dataclass(frozen=True)
class Dialect:
    """What differs between the databases, decided once."""

    name: str  # sqlite, postgresql, mysql
    #: INSERT ... ON CONFLICT DO UPDATE/NOTHING with a WHERE (SQLite, PostgreSQL); MySQL has
    #: ON DUPLICATE KEY UPDATE without a condition, so it updates, then inserts if it must.
    upsert: bool
    #: SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL, MariaDB); SQLite has one writer anyway.
    skip_locked: bool
    #: The database's clock can differ from this machine's (a server elsewhere).
    server_clock: bool
    #: A row's physical address, quicker to delete by than the primary key (SQLite's rowid;
    #: None: the primary key).
    row_key: str | None

    def insert(self, table: Any) -> Any:
        """The INSERT that can say ON CONFLICT (only where :attr:`upsert` holds). Imported here:
        a statement is built once, and SQLite need not load PostgreSQL's dialect (nor the reverse)."""
        if self.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    @classmethod
    def of(cls, name: str) -> Dialect:
        return cls(
            name=name,
            upsert=name in ("sqlite", "postgresql"),
            skip_locked=name in ("postgresql", "mysql"),
            server_clock=name != "sqlite",
            row_key="rowid" if name == "sqlite" else None,
        )


#: SQLite's result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
_DAMAGED_CODES = frozenset({11, 26})


def is_damaged(exc: BaseException) -> bool:
    """True if ``exc`` (a driver error, or SQLAlchemy's wrapping of one) says the database file
    is damaged ("database disk image is malformed", "file is not a database")."""
    code = getattr(getattr(exc, "orig", None) or exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGED_CODES


def damaged_message(settings: PersistenceSettings, detail: str) -> str:
    """One line for a damaged SQLite database: which file, what SQLite said, what to do."""
    path = settings.database_path
    return (
        f"the database file {path} is damaged ({detail}): stop every Mimir process using it, then restore "
        f"a backup, or recover what it holds with: sqlite3 {path} .recover | sqlite3 {path}.recovered"
    )


def operation(name: str) -> Callable[[F], F]:
    """Count and time a store method in its database's metrics; turn driver errors into one-line
    :class:`PersistenceError` (no password), and an error saying the file is damaged into
    :class:`DatabaseCorrupt` (see :meth:`Database.damaged`). The method's object has a ``db``
    attribute."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
            db: Database = self.db
            start = time.perf_counter()
            ok = False
            try:
                result = fn(self, *args, **kwargs)
                ok = True
                return result
            except MimirError as exc:
                ok = isinstance(exc, NotFound)  # a lookup that finds nothing is not a failure
                if not ok and not isinstance(exc, DatabaseCorrupt):  # that one is logged once
                    log.warning("persistence operation %s failed: %s", name, exc)
                raise
            except Exception as exc:
                if not db.is_database_error(exc):
                    raise
                if is_damaged(exc):
                    raise db.damaged(db.describe(exc), name) from None
                message = db.describe(exc)
                log.error("persistence operation %s failed: %s", name, message)
                raise PersistenceError(f"{name} failed: {message}") from None
            finally:
                db.metrics.record(name, time.perf_counter() - start, ok)

        return cast(F, inner)  # inner takes and returns what fn does

    return wrap


def one_of(column: Any, values: Sequence[Any]) -> Any:
    """``column IN (values)`` for a prepared statement: fixed values, one parameter each (a
    plain ``in_(values)`` is an "expanding" parameter that only SQLAlchemy's execution renders)."""
    return column.in_([literal(v, column.type) for v in values])


class Prepared:
    """A Core statement compiled once for one dialect, run on a driver connection.

    ``params(values)`` turns a mapping of bind names to Python values into what the driver
    takes (in order for positional paramstyles); ``convert(rows)`` the driver's rows into lists
    of Python values, in the order of the statement's selected columns."""

    def __init__(self, statement: ClauseElement, engine: Engine, column_keys: Sequence[str] | None = None) -> None:
        dialect = engine.dialect
        compiled = cast(
            SQLCompiler, statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        )
        self.sql = compiled.string
        binds = compiled.binds
        order = compiled.positiontup if dialect.positional else list(binds)
        self._names = list(order or ())
        self._positional = dialect.positional
        self._binds = [(name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in self._names]
        # Values fixed in the statement (``literal()``s: see :func:`one_of`).
        self._fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        selected = getattr(statement, "selected_columns", None)
        self.columns = [c.key for c in selected] if selected is not None else []
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected or ()]
        self._converters = [(i, proc) for i, proc in enumerate(processors) if proc is not None]

    def params(self, values: dict[str, Any] | None = None) -> Any:
        given = values or {}
        out = []
        for name, proc in self._binds:
            if name in given:
                value = given[name]
            elif name in self._fixed:
                value = self._fixed[name]
            else:  # a typo or a forgotten value must not become NULL
                raise KeyError(f"no value for the parameter {name!r} of: {self.sql}")
            out.append(proc(value) if proc is not None and value is not None else value)
        if self._positional:
            return tuple(out)
        return dict(zip(self._names, out, strict=True))

    def convert(self, rows: list[Any]) -> list[Any]:
        """Rows of driver values -> lists of Python values (times, JSON, flags converted)."""
        converters = self._converters
        out = []
        for row in rows:
            values = list(row)
            for i, convert in converters:
                value = values[i]
                if value is not None:
                    values[i] = convert(value)
            out.append(values)
        return out


@contextmanager
def _pragma_while(conn: Any, setting: str, value: int, after: int) -> Iterator[None]:
    """SQLite: ``PRAGMA setting = value`` on driver connection ``conn`` for the block, then
    ``after``."""
    conn.execute(f"PRAGMA {setting} = {value}")
    try:
        yield
    finally:
        try:
            conn.execute(f"PRAGMA {setting} = {after}")
        except Exception:  # the connection is unusable: closed on release
            pass


class Database:
    """One database: its engine, dialect flags, write gate, metrics and prepared statements."""

    def __init__(self, engine: Engine, settings: PersistenceSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.dialect = Dialect.of(engine.dialect.name)
        self.url = display_url(settings)
        self.metrics = OperationMetrics()
        self._write_engine = engine.execution_options(**WRITE)
        self._dbapi_error: type[BaseException] = engine.dialect.loaded_dbapi.Error
        self._dbapi_integrity_error: type[BaseException] = engine.dialect.loaded_dbapi.IntegrityError
        self.gate: WriteGate | None = None
        if self.dialect.name == "sqlite":
            self.gate = write_gate(settings.database_path, settings.busy_timeout_ms)
        self._prepared: dict[Any, Prepared] = {}
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # SQLite: driver connections kept between calls
        self._keep = max(1, settings.pool_size)
        #: The message of the first error that said the file is damaged (None: none seen).
        self.corruption: str | None = None

    # -- SQLAlchemy connections ---------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self, *, bulk: bool = False) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite, behind the gate), committed on success.
        ``bulk``: a transaction of many rows (a retention batch), given a larger page cache."""
        if self.gate is None:
            with self._write_engine.begin() as conn:
                yield conn
            return
        # The checkpoint setting is changed around the whole transaction: its COMMIT is where
        # SQLite would checkpoint.
        with self.gate, self._write_engine.connect() as conn:
            driver = conn.connection.driver_connection
            with self._bulk_cache(driver, bulk), self._checkpoints_deferred(driver), conn.begin():
                yield conn

    @contextmanager
    def _bulk_cache(self, conn: Any, bulk: bool = True) -> Iterator[None]:
        """SQLite, around a bulk statement on ``conn``: SQLite's default page cache instead of
        the small one each connection keeps (:data:`~.engine.SQLITE_CACHE_KIB`). A retention
        batch dirties more pages than the small cache holds, which SQLite then spills to the
        WAL before the commit: 18,000 rows deleted a second became 14,800
        (``bench/retention.py --quick``)."""
        if not bulk or self.dialect.name != "sqlite":
            yield
            return
        with _pragma_while(conn, "cache_size", -BULK_CACHE_KIB, -SQLITE_CACHE_KIB):
            yield

    # -- prepared statements on driver connections -------------------------------------

    def prepare(
        self, key: Any, build: Callable[[], ClauseElement], column_keys: Sequence[str] | None = None
    ) -> Prepared:
        """The statement ``build()`` makes, compiled once for this database under ``key``."""
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(build(), self.engine, column_keys)
        return prepared

    def fetch(self, prepared: Prepared, values: dict[str, Any] | None = None, *, convert: bool = True) -> list[Any]:
        """Run a prepared SELECT; rows as tuples of Python values (``convert=False``: as the
        driver returned them, for the lean rows of :mod:`.rows`)."""
        conn = self._acquire()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(prepared.sql, prepared.params(values))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        finally:
            self._release(conn, rollback=True)
        return prepared.convert(rows) if convert else rows

    @contextmanager
    def raw_write(self) -> Iterator[RawTransaction]:
        """A write transaction on a driver connection (behind the gate on SQLite)."""
        if self.gate is not None:
            with self.gate:
                yield from self._raw_transaction("BEGIN IMMEDIATE")
        else:
            yield from self._raw_transaction(None)

    def _raw_transaction(self, begin: str | None) -> Iterator[RawTransaction]:
        conn = self._acquire()
        cursor = None
        try:
            cursor = conn.cursor()
            if begin:
                cursor.execute(begin)
            with self._checkpoints_deferred(conn):
                yield RawTransaction(cursor)
                conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                pass
            raise
        finally:
            if cursor is not None:
                cursor.close()
            self._release(conn)

    @contextmanager
    def _checkpoints_deferred(self, conn: Any) -> Iterator[None]:
        """SQLite, while a bulk operation (retention) runs in this process: no automatic WAL
        checkpoint at this connection's commit. SQLite checkpoints in whichever connection
        commits once the WAL holds 1,000 pages, inside that writer's call; a long retention run
        fills the WAL quickly, so every writer squeezed in between two batches would pay for a
        checkpoint (hundreds of milliseconds), and so would the next batch. The bulk operation
        checkpoints itself instead, every few batches (:meth:`checkpoint`)."""
        if self.gate is None or not self.gate.bulk_active:
            yield
            return
        with _pragma_while(conn, "wal_autocheckpoint", 0, WAL_AUTOCHECKPOINT):
            yield

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers and writers allow (SQLite;
        PASSIVE: it waits for none of them, and writers go on committing meanwhile)."""
        if self.dialect.name != "sqlite":
            return
        conn = self._acquire()
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            self._release(conn)

    @contextmanager
    def driver(self) -> Iterator[Any]:
        """A driver connection for statements SQLAlchemy has no use for (``PRAGMA
        integrity_check``, ``VACUUM``); left as it was found (a read's transaction rolled back)."""
        conn = self._acquire()
        try:
            with self._bulk_cache(conn):
                yield conn
        finally:
            self._release(conn, rollback=True)

    def _acquire(self) -> Any:
        if self.dialect.name == "sqlite":
            with self._lock:
                if self._idle:
                    return self._idle.pop()
            fairy = self.engine.raw_connection()  # runs the engine's connect listeners
            conn = fairy.dbapi_connection
            fairy.detach()  # ours from now on: kept in self._idle, closed by close()
            return conn
        return self.engine.raw_connection()  # the pool's (pre-ping, recycle); close() returns it

    def _release(self, conn: Any, rollback: bool = False) -> None:
        if self.dialect.name != "sqlite":
            if rollback:
                try:
                    conn.rollback()  # a read leaves no transaction open
                except Exception:
                    pass
            conn.close()
            return
        if conn.in_transaction:  # a failed call that could not roll back: do not reuse
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    # -- errors, clock, lifecycle ------------------------------------------------------

    def is_database_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (SQLAlchemyError, self._dbapi_error))

    def is_integrity_error(self, exc: BaseException) -> bool:
        """A constraint said no (a duplicate key, a missing foreign key), on either path."""
        return isinstance(exc, (IntegrityError, self._dbapi_integrity_error))

    def damaged(self, detail: str, seen_by: str) -> DatabaseCorrupt:
        """The error for a damaged database file. The first is logged (once, CRITICAL: the
        loops that meet it again stay quiet) and kept in :attr:`corruption` for the health
        check and the service, which stops on it."""
        error = DatabaseCorrupt(damaged_message(self.settings, detail))
        with self._lock:
            first, self.corruption = self.corruption is None, self.corruption or str(error)
        if first:
            log.critical("%s (seen by %s)", error, seen_by)
        return error

    def quick_check(self, budget: float) -> bool:
        """SQLite's ``PRAGMA quick_check``, given ``budget`` seconds (it reads the whole file:
        a large database is not checked to its end); True if it found nothing, False if it ran
        out of time. A problem found raises :class:`DatabaseCorrupt` naming the first one."""
        conn = self._acquire()
        deadline = time.monotonic() + budget
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        except self._dbapi_error as exc:
            if "interrupted" in str(exc) and not is_damaged(exc):
                return False
            raise
        finally:
            conn.set_progress_handler(None, 0)
            self._release(conn)
        found = [line for row in rows for line in str(row[0]).splitlines() if not line.startswith("***")]
        if found == ["ok"]:
            return True
        raise self.damaged(found[0] if found else "quick_check failed", "quick_check")

    def describe(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if "database is locked" in first:
            first = f"the database stayed locked by another program for over {self.settings.busy_timeout_ms / 1000:g} s"
        return scrub(first, self.settings)

    def now(self) -> datetime:
        """The database server's clock, in UTC (SQLite: this machine's)."""
        if not self.dialect.server_clock:
            return utcnow()
        sql = "SELECT CURRENT_TIMESTAMP" if self.dialect.name == "postgresql" else "SELECT UTC_TIMESTAMP(6)"
        with self.read() as conn:
            value: datetime = conn.execute(text(sql)).scalar_one()
        return as_utc(value)

    def marker(self) -> tuple[int, ...] | None:
        """What changes whenever anyone commits to this SQLite database, or changes its file
        otherwise: the identity, modification time and size of the file, and the modification
        time and size of its write-ahead log (every commit appends to it; a checkpoint writes
        the file). Two ``stat`` calls, where a query costs a hundred times more: idle loops
        look at it before they read. None on a server (unknown: read), or when the file cannot
        be seen."""
        if self.gate is None:
            return None
        path = self.settings.database_path
        try:
            db = os.stat(path)
        except OSError:
            return None
        try:
            wal = os.stat(f"{path}-wal")
            log = (wal.st_mtime_ns, wal.st_size)
        except OSError:  # no log (not in WAL mode, or closed cleanly)
            log = (0, 0)
        return (db.st_ino, db.st_mtime_ns, db.st_size, *log)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._keep = 0
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass
        self.engine.dispose()


class RawTransaction:
    """The cursor of a :meth:`Database.raw_write` transaction."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, prepared: Prepared, values: dict[str, Any] | None = None) -> int:
        """Run a prepared statement; returns the rows it changed."""
        self.cursor.execute(prepared.sql, prepared.params(values))
        return self.cursor.rowcount

    def fetch(self, prepared: Prepared, values: dict[str, Any] | None = None) -> list[tuple]:
        self.cursor.execute(prepared.sql, prepared.params(values))
        return prepared.convert(self.cursor.fetchall())

    def execute_many(
        self, prepared: Prepared, rows: Sequence[Any], values: Callable[[Any], dict[str, Any]] | None = None
    ) -> int:
        """Run a prepared statement once per row, in one call to the driver (SQLite loops in C,
        psycopg pipelines, PyMySQL sends one multi-row INSERT); returns the rows changed in all.
        ``values(row)`` gives a row's values (``rows`` are the values themselves without it):
        made one row at a time as the driver takes them, not all before (a burst's 1,000
        executions held 1.7 MiB of them at once)."""
        if not rows:
            return 0
        params, of = prepared.params, values or (lambda row: row)
        self.cursor.executemany(prepared.sql, (params(of(row)) for row in rows))
        return self.cursor.rowcount
