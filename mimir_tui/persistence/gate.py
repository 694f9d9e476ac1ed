"""The write gate of a SQLite file: one lock for every Mimir writer of that file, in this process
and in others.

SQLite lets one writer in at a time, and a writer that finds the database locked sleeps and
tries again, up to 100 ms apart: a retention run that commits a batch and begins the next at
once nearly always wins, and other writers can wait many batches. So Mimir's writers queue on
the gate instead: a mutex between the threads of a process, and an exclusive ``flock`` on
``<database>-mimir.lock`` between processes. The holder of a bulk operation
(:meth:`WriteGate.bulk`, retention) steps aside between two batches, so a writer waits about
one batch at most. SQLite's own busy timeout stays as the guard against writers
that are not Mimir's (the ``sqlite3`` shell).

Without ``fcntl`` (Windows) or where the lock file cannot be made (a read-only folder), the gate
lets everyone through and SQLite's busy timeout alone orders the writers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import PersistenceError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # Windows has no fcntl: the gate tests for None

#: How long the holder of a bulk operation steps aside between two batches: long enough for a
#: writer polling every millisecond to take the gate.
BULK_PAUSE_S = 0.005
#: How long at most it waits, between two batches, for this process's waiting writers.
BULK_YIELD_MAX_S = 0.1


class WriteGate:
    """``with gate:`` around every write transaction; ``with gate.bulk():`` around a long run of
    short write transactions (retention) that should let other writers in between them.

    Two parts, one for each kind of neighbour: a mutex for this process's threads (a waiter
    wakes the moment the holder lets go: the scheduler's claims and the runs' saves of one
    instance pass it hundreds of times a second), and the process's ``flock`` on the lock file
    for other processes (tried every millisecond, since a lock in another process cannot wake
    us)."""

    def __init__(self, database_path: str, timeout: float = 5.0) -> None:
        self.path = f"{database_path}-mimir.lock"
        self.timeout = timeout  # seconds a writer waits before the call fails
        self._mutex = threading.Lock()
        self._local = threading.local()  # depth: the holder may enter again
        self._bulk = 0  # bulk operations in progress in this process
        self._waiting = 0  # writers of this process waiting for the gate
        self._guard = threading.Lock()
        self._fd: int | None = None  # closed in a forked child (see after_fork_in_child)

    # -- one writer at a time ----------------------------------------------------------

    def __enter__(self) -> WriteGate:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth:  # re-entered by its holder
            local.depth = depth + 1
            return self
        deadline = time.monotonic() + self.timeout
        if not self._mutex.acquire(blocking=False):
            with self._guard:
                self._waiting += 1
            try:
                if not self._mutex.acquire(timeout=self.timeout):
                    raise self._busy()
            finally:
                with self._guard:
                    self._waiting -= 1
        try:
            self._lock_file(deadline)
        except BaseException:
            self._mutex.release()
            raise
        local.depth = 1
        return self

    def __exit__(self, *exc: object) -> None:
        local = self._local
        local.depth -= 1
        if local.depth:
            return
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass
        self._mutex.release()

    def _lock_file(self, deadline: float) -> None:
        """The process's flock, tried every millisecond until ``deadline``."""
        fd = self._descriptor()
        if fd is None:
            return
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(0.001)

    def _busy(self) -> PersistenceError:
        return PersistenceError(
            f"the database is busy: another Mimir writer has held it for over {self.timeout:g} s ({self.path})"
        )

    def _descriptor(self) -> int | None:
        if fcntl is None:
            return None
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only folder: SQLite's lock alone
                return None
        return self._fd

    # -- bulk operations ---------------------------------------------------------------

    @property
    def bulk_active(self) -> bool:
        """A bulk operation runs in this process: its writers leave WAL checkpoints to it."""
        return self._bulk > 0

    @contextmanager
    def bulk(self) -> Iterator[BulkRun]:
        """A run of short write transactions: take the gate per batch with ``run.batch()``."""
        with self._guard:
            self._bulk += 1
        try:
            yield BulkRun(self)
        finally:
            with self._guard:
                self._bulk -= 1

    def after_fork_in_child(self) -> None:
        """A forked child starts with no writer: the mutex is new (the parent's holder does not
        exist here) and the parent's descriptor is closed (a flock belongs to the open file, so
        a child keeping it would keep a dead parent's lock)."""
        self._mutex = threading.Lock()
        self._guard = threading.Lock()
        self._local = threading.local()
        self._bulk = self._waiting = 0
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None


class BulkRun:
    """The batches of one bulk operation: each holds the gate; between two, writers get in."""

    def __init__(self, gate: WriteGate) -> None:
        self.gate = gate
        self._batches = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One batch, holding the gate. From the second on, it first steps aside: a moment for
        writers of other processes (they poll the lock file every millisecond), and until this
        process's waiters are through (at most :data:`BULK_YIELD_MAX_S`): a woken waiter can
        still lose the mutex to a batch that starts at once, on a busy machine."""
        if self._batches:
            time.sleep(BULK_PAUSE_S)
            deadline = time.monotonic() + BULK_YIELD_MAX_S
            while self.gate._waiting and time.monotonic() < deadline:
                time.sleep(0.001)
        self._batches += 1
        with self.gate:
            yield


_gates: dict[str, WriteGate] = {}
_gates_guard = threading.Lock()


def write_gate(database_path: str, timeout_ms: int = 5000) -> WriteGate:
    """The gate of ``database_path`` (one per file in a process); ``timeout_ms``: how long a
    writer waits for it (the longest asked for by any backend open on the file)."""
    key = os.path.realpath(database_path)
    with _gates_guard:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = WriteGate(key, timeout_ms / 1000)
        else:
            gate.timeout = max(gate.timeout, timeout_ms / 1000)
        return gate


def _after_fork_in_child() -> None:
    global _gates_guard
    _gates_guard = threading.Lock()
    for gate in _gates.values():
        gate.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
