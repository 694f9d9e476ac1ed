"""The write gate of a SQLite file: one lock for every Mimir writer of that file, in this process
and in others.

SQLite lets one writer in at a time, and a writer that finds the database locked sleeps and
tries again, up to 100 ms apart: a retention run that commits a batch and begins the next at
once nearly always wins, and other writers can wait many batches. So Mimir's writers queue on
``<database>-mimir.lock`` instead, an exclusive ``flock`` that each thread takes through a file
descriptor of its own (``flock`` locks belong to an open file, so two descriptors of one process
exclude each other like two processes do). A waiter tries every millisecond; the holder of a
bulk operation (:meth:`WriteGate.bulk`, retention) pauses between two batches, so a writer
waits about one batch at most. SQLite's own busy timeout stays as the guard against writers
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
BULK_PAUSE_S = 0.002
#: How long at most it waits, between two batches, for this process's waiting writers.
BULK_YIELD_MAX_S = 0.1


class WriteGate:
    """``with gate:`` around every write transaction; ``with gate.bulk():`` around a long run of
    short write transactions (retention) that should let other writers in between them."""

    def __init__(self, database_path: str, timeout: float = 5.0) -> None:
        self.path = f"{database_path}-mimir.lock"
        self.timeout = timeout  # seconds a writer waits before the call fails
        self._local = threading.local()
        self._bulk = 0  # bulk operations in progress in this process
        self._waiting = 0  # writers of this process waiting for the gate
        self._guard = threading.Lock()
        self._fds: set[int] = set()  # every descriptor opened, closed in a forked child

    # -- one writer at a time ----------------------------------------------------------

    def __enter__(self) -> WriteGate:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or a forked child
            local.pid, local.fd, local.depth = os.getpid(), None, 0
        if local.depth:  # re-entered by its holder
            local.depth += 1
            return self
        fd = self._descriptor()
        if fd is not None and not self._try(fd):
            self._wait(fd)
        local.depth = 1
        return self

    def _try(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _wait(self, fd: int) -> None:
        """Try every millisecond until the busy timeout; counted as a waiter meanwhile (a bulk
        operation of this process lets its waiters in before its next batch)."""
        deadline = time.monotonic() + self.timeout
        with self._guard:
            self._waiting += 1
        try:
            while not self._try(fd):
                if time.monotonic() >= deadline:
                    raise PersistenceError(
                        f"the database is busy: another Mimir writer has held it for over "
                        f"{self.timeout:g} s ({self.path})"
                    ) from None
                time.sleep(0.001)
        finally:
            with self._guard:
                self._waiting -= 1

    def __exit__(self, *exc: object) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0 and local.fd is not None:
            try:
                fcntl.flock(local.fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def _descriptor(self) -> int | None:
        local = self._local
        if fcntl is None:
            return None
        if local.fd is None:
            try:
                local.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only folder: SQLite's lock alone
                return None
            with self._guard:
                self._fds.add(local.fd)
        return local.fd

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
        """A forked child starts with no writer: the parent's descriptors are closed (a flock
        belongs to the open file, so a child keeping one would keep a dead parent's lock)."""
        self._guard = threading.Lock()
        self._local = threading.local()
        self._bulk = self._waiting = 0
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = set()


class BulkRun:
    """The batches of one bulk operation: each holds the gate; between two, writers get in."""

    def __init__(self, gate: WriteGate) -> None:
        self.gate = gate
        self._batches = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One batch, holding the gate. From the second on, it first steps aside: a moment for
        writers of other processes, and until this process's waiters are through (at most
        :data:`BULK_YIELD_MAX_S`): they poll, and would otherwise lose most races to a batch
        that starts at once."""
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
