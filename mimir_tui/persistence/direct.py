"""The SQLite hot paths: plain ``sqlite3`` connections made by the engine, precompiled SQL.

SQLAlchemy Core costs some 400 us a call on SQLite (pool checkout and reset, the begin event,
statement caching, result objects), several times what SQLite itself spends saving one
execution or reading a page of fifty. For the calls that run all the time (saving an
execution, listing and reading executions, retention) the backend uses this module instead:

- connections come from the engine (so every one went through its ``connect`` listeners:
  WAL, synchronous=NORMAL, foreign_keys=ON, busy_timeout) and are then kept in a small list
  of idle connections of our own, one borrowed per call, never shared by two threads at once;
- statements are SQL strings written once from the table's metadata, so SQLite's statement
  cache keeps them prepared;
- values are converted with the bind and result processors SQLAlchemy would use for the same
  columns (taken from the column types), so rows are written and read exactly as the
  SQLAlchemy path writes and reads them; rows become model instances without validation,
  and a value that needs converting is converted on its first read (``models.ConvertOnRead``).

Writes from one process to one database file take a FIFO lock first (:func:`write_lock`):
SQLite lets one writer in at a time, and a writer that finds the lock taken polls with
growing sleeps (up to 100 ms apart). Queued on a fair lock instead, a writer of this process
gets in right after the transaction ahead of it, however busy the others are. Writers of
other Mimir processes queue on a lock file beside the database (:class:`ProcessWriteLock`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Sequence

from sqlalchemy import Engine, Table
from sqlalchemy.orm import configure_mappers

from ..errors import PersistenceError
from .models import PendingRow, convert_on_read


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: other processes' writers meet SQLite's lock alone
    fcntl = None  # type: ignore[assignment]


class ProcessWriteLock:
    """``<database>-mimir.lock``: the write lock between Mimir processes (an exclusive
    ``flock``), taken by a process's write lock (:class:`FairLock`) on top of its own.

    SQLite gives a writer that finds the database locked no turn: it sleeps and tries again,
    up to 100 ms apart, so a retention run that commits a batch and begins the next at once
    nearly always wins, and a writer in another process can wait many batches. Mimir's writers
    of every process queue here instead: a waiter tries every millisecond, and a retention run
    pauses a moment between two batches, so a writer waits about one batch at most. Writers
    that are not Mimir's (the sqlite3 shell) still meet SQLite's own lock only."""

    def __init__(self, database_path: str, timeout: float = 5.0) -> None:
        self.path = f"{database_path}-mimir.lock"
        self.timeout = timeout  # seconds: the longest busy_timeout of the backends (see write_lock)
        self._fd: int | None = None
        self._pid = os.getpid()

    def acquire(self) -> None:
        if fcntl is None:
            return
        if self._pid != os.getpid():  # a forked child: its parent's open file shares its locks
            self._fd, self._pid = None, os.getpid()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PersistenceError(
                            f"database is locked: another Mimir process has held its write lock for "
                            f"over {self.timeout:g} s ({self.path})"
                        ) from None
                    time.sleep(0.001)
        except OSError:  # the lock file cannot be made (a read-only folder): SQLite's lock alone
            return

    def release(self) -> None:
        if fcntl is None or self._fd is None or self._pid != os.getpid():
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass


class FairLock:
    """A re-entrant lock handed to its waiters in arrival order (``threading.Lock`` is not:
    a thread that releases it and asks again at once usually gets it back). With
    ``between_processes``, its owner also holds that :class:`ProcessWriteLock`."""

    def __init__(self, between_processes: ProcessWriteLock | None = None) -> None:
        self.between_processes = between_processes
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._owner: int | None = None
        self._depth = 0
        #: Retention runs in progress on this file: while there are any, this process's
        #: writers leave WAL checkpoints to them (see :func:`autocheckpoint_off`).
        self.deferring = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return
        self._acquire(me)
        if self.between_processes is not None:
            try:
                self.between_processes.acquire()
            except BaseException:
                self.release()
                raise

    def _acquire(self, me: int) -> None:
        with self._mutex:
            if self._owner is None and not self._waiters:
                self._owner, self._depth = me, 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        try:
            turn.acquire()  # released by the owner that hands the lock over to us
            self._owner, self._depth = me, 1
        except BaseException:
            # Interrupted (KeyboardInterrupt from a signal handler, say): leave no dead entry
            # in the queue, and if the lock was already handed to us, hand it on; otherwise
            # the next release would give it to no one and every later writer would hang.
            with self._mutex:
                try:
                    self._waiters.remove(turn)
                except ValueError:  # released to us: we own the lock, pass it on
                    self._owner, self._depth = None, 0
                    if self._waiters:
                        self._owner = -1
                        self._waiters.popleft().release()
            raise

    def release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            if self.between_processes is not None and self._owner == threading.get_ident():
                self.between_processes.release()
            self._owner = None
            if self._waiters:
                # Hand over: marked taken until the next owner sets itself, so no one jumps in.
                self._owner = -1
                self._waiters.popleft().release()

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_write_locks: dict[str, FairLock] = {}
_write_locks_guard = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child starts with no writer of its own: every write lock it inherited is reset
    (the parent's threads that held or awaited one do not exist here), and the parent's lock
    file descriptors are closed, for a flock belongs to the open file: a child keeping it
    would keep the parent's lock alive after the parent died."""
    global _write_locks_guard
    _write_locks_guard = threading.Lock()
    for lock in _write_locks.values():
        lock._mutex, lock._waiters, lock._owner, lock._depth, lock.deferring = threading.Lock(), deque(), None, 0, 0
        between = lock.between_processes
        if between is not None and between._fd is not None:
            try:
                os.close(between._fd)
            except OSError:
                pass
            between._fd, between._pid = None, os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def write_lock(database_path: str, timeout_ms: int = 5000) -> FairLock:
    """The lock this process's writers of ``database_path`` queue on (and, through it, those
    of other Mimir processes); ``timeout_ms``: how long a writer waits for another process."""
    key = os.path.realpath(database_path)
    with _write_locks_guard:
        lock = _write_locks.get(key)
        if lock is None:
            lock = _write_locks[key] = FairLock(ProcessWriteLock(key, timeout_ms / 1000))
        elif lock.between_processes is not None:
            lock.between_processes.timeout = max(lock.between_processes.timeout, timeout_ms / 1000)
        return lock


class Connections:
    """Idle ``sqlite3`` connections made by ``engine``; one borrowed per call."""

    def __init__(self, engine: Engine, keep: int) -> None:
        self._engine = engine
        self._keep = max(1, keep)
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._guard = threading.Lock()

    def acquire(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child never uses its parent's connections
            self._idle = []
            self._pid = os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            pass
        fairy = self._engine.raw_connection()  # runs the engine's connect listeners
        conn = fairy.dbapi_connection
        fairy.detach()  # ours from now on; closed by release() or close()
        return conn  # type: ignore[return-value]

    def release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # a failed call that could not roll back: do not reuse
            _close_quietly(conn)
            return
        with self._guard:
            if not self._closed and len(self._idle) < self._keep and self._pid == os.getpid():
                self._idle.append(conn)
                return
        _close_quietly(conn)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    def read(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        conn = self.acquire()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self.release(conn)


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


@contextmanager
def autocheckpoint_off(conn: sqlite3.Connection):
    """No automatic WAL checkpoint at this connection's commits until the block ends.

    SQLite checkpoints the WAL in whichever connection commits once it holds 1000 pages, inside
    that writer's call. A long retention run commits a batch every ~100 ms; if every batch (or
    the writer squeezed in after it) checkpointed, the run would spend half its time copying
    pages into the database file and fsyncing, most of them index pages that the next batch
    rewrites. So during a run the deleter checkpoints every few batches itself, and this
    process's other writers do not.
    """
    previous = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        yield conn
    finally:
        try:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")
        except sqlite3.Error:  # the connection is unusable: release() will not keep it
            _close_quietly(conn)


def rollback_quietly(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


# -- SQL and conversions from the table's metadata ------------------------------------------


def column_list(table: Table) -> str:
    return ", ".join(c.name for c in table.columns)


def upsert_sql(table: Table, key: str, keep: Sequence[str] = ()) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET every column but ``key`` and ``keep``."""
    names = [c.name for c in table.columns]
    sets = ", ".join(f"{n} = excluded.{n}" for n in names if n != key and n not in keep)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
    )


def bind_params(table: Table, dialect: Any) -> Callable[[Any], tuple]:
    """``obj`` -> the tuple of its column values as SQLAlchemy would bind them, in column order.

    Generated like :func:`row_builder`: it runs once per save. (A record read by
    :func:`row_builder` holds no pending value by then: the save's first write to it, of
    ``updated_at``, converted them all; see ``models._LazyState``.)"""
    names = [c.name for c in table.columns]
    env: dict[str, Any] = {"getattr": getattr}
    items = []
    for i, column in enumerate(table.columns):
        proc = column.type.dialect_impl(dialect).bind_processor(dialect)
        if proc is None:
            items.append(f"v{i}")
        else:
            env[f"p{i}"] = proc
            items.append(f"p{i}(v{i})")
    unpack = ", ".join(f"v{i}" for i in range(len(names)))
    source = "\n".join(
        [
            "def params(obj):",
            "    d = obj.__dict__",
            "    try:",
            f"        ({unpack},) = ({', '.join(f'd[{n!r}]' for n in names)},)",
            "    except KeyError:  # not loaded (expired, deferred): through the attributes",
            f"        ({unpack},) = ({', '.join(f'getattr(obj, {n!r})' for n in names)},)",
            f"    return ({', '.join(items)},)",
        ]
    )
    exec(compile(source, f"<mimir bind params for {table.name}>", "exec"), env)
    return env["params"]


def row_builder(model: type, table: Table, dialect: Any) -> Callable[[list[tuple]], list[Any]]:
    """A function turning rows (tuples in column order) into model instances.

    The instances have the pydantic slots set and every column in ``__dict__``, and no
    SQLAlchemy state until their first attribute write (see ``models._LazyState``), and no
    validation. Columns whose values need converting (timestamps, JSON, booleans: those whose
    type has a result processor) hold the row itself, shared, until first read
    (``models.ConvertOnRead``): a page of fifty is read for a few attributes of each row.
    The function is generated, one line per column, because this loop is the whole cost of a
    query of 50 rows.
    """
    configure_mappers()
    columns = list(table.columns)
    names = [c.name for c in columns]
    converters = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    convert_on_read(model, [(names[i], i) for i, proc in enumerate(converters) if proc is not None])
    env: dict[str, Any] = {
        "cls": model,
        "new": object.__new__,
        "osa": object.__setattr__,
        "fields": frozenset(model.model_fields),  # type: ignore[attr-defined]
        "Pending": PendingRow,
        "converters": converters,
    }
    items = [f"{name!r}: {'v' + str(i) if converters[i] is None else 'p'}" for i, name in enumerate(names)]
    unpack = ", ".join(f"v{i}" for i in range(len(columns)))
    source = "\n".join(
        [
            "def build(rows):",
            "    out = []",
            "    append = out.append",
            "    for row in rows:",
            f"        ({unpack},) = row",
            "        p = Pending((row, converters))",
            "        obj = new(cls)",
            "        osa(obj, '__dict__', {" + ", ".join(items) + "})",
            "        osa(obj, '__pydantic_fields_set__', set(fields))",
            "        osa(obj, '__pydantic_extra__', None)",
            "        osa(obj, '__pydantic_private__', None)",
            "        append(obj)",
            "    return out",
        ]
    )
    exec(compile(source, f"<mimir row builder for {table.name}>", "exec"), env)
    return env["build"]
