"""The write gate of a SQLite file (``<database>-mimir.lock``): a writer waits for another
process's or thread's writer to finish, and gives up after the busy timeout with one line,
writing nothing; SQLite's own "database is locked" never reaches a user."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import UTC

import pytest

from mimir_tui.errors import PersistenceError
from mimir_tui.persistence import JobExecutionRecord, open_backend

HOLDER = """
import sys, time
from mimir_tui.persistence.gate import write_gate
with write_gate(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print(repr(time.time()), flush=True)  # the moment it lets go
"""


def hold_in_another_process(path: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_writer_waits_for_another_mimir_processs_writer(sqlite_settings) -> None:
    backend = open_backend(sqlite_settings)
    path = sqlite_settings.persistence.database_path
    try:
        holder = hold_in_another_process(path, 0.5)
        backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))
        saved_at = time.time()
        let_go_at = float(holder.stdout.readline())
        holder.wait(10)
        assert saved_at >= let_go_at, "the save went in while the other process held the lock"
        assert len(backend.list_executions(None, 10)) == 1
        mode = stat.S_IMODE(os.stat(f"{os.path.realpath(path)}-mimir.lock").st_mode)
        assert mode == 0o600
    finally:
        backend.close()


def test_it_gives_up_after_the_busy_timeout_and_writes_nothing(sqlite_settings) -> None:
    sqlite_settings.persistence.busy_timeout_ms = 300
    backend = open_backend(sqlite_settings)
    try:
        holder = hold_in_another_process(sqlite_settings.persistence.database_path, 3)
        try:
            with pytest.raises(PersistenceError, match="another Mimir writer has held it") as err:
                backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))
            assert "\n" not in str(err.value)
        finally:
            holder.kill()
            holder.wait(10)
        assert backend.list_executions(None, 10) == []
        backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))  # free again: fine
        assert len(backend.list_executions(None, 10)) == 1
    finally:
        backend.close()


def test_a_retention_run_stopped_by_the_timeout_leaves_the_process_as_it_found_it(tmp_path) -> None:
    """The gate leaves bulk mode, and the next write goes through."""
    import fcntl
    import threading
    from datetime import datetime, timedelta

    from mimir_tui.config import PersistenceSettings

    path = str(tmp_path / "m.db")
    backend = open_backend(PersistenceSettings(database_path=path, busy_timeout_ms=200))
    try:
        old = datetime.now(UTC) - timedelta(days=100)
        for _ in range(3000):
            backend.save_execution(JobExecutionRecord(pipeline="p", status="success", start_time=old))
        backend.executions.delete_batch_target_s = 0.0005  # many small batches
        gate, out = backend.db.gate, {}

        def run() -> None:
            try:
                backend.delete_old_executions(datetime.now(UTC), batch_size=50)
            except PersistenceError as exc:
                out["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        while not gate.bulk_active and thread.is_alive():
            time.sleep(0.0005)
        fd = os.open(os.path.realpath(path) + "-mimir.lock", os.O_RDWR)  # another process, as it were
        fcntl.flock(fd, fcntl.LOCK_EX)
        time.sleep(0.7)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        thread.join(10)
        assert "another Mimir writer" in str(out.get("error"))
        assert not gate.bulk_active
        backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))  # writes as before
    finally:
        backend.close()


FORKING_PARENT = """
import multiprocessing, os, signal, sys, time
from mimir_tui.config import PersistenceSettings
from mimir_tui.persistence import JobExecutionRecord, open_backend
from mimir_tui.persistence.gate import write_gate
backend = open_backend(PersistenceSettings(database_path=sys.argv[1]))
backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))  # the lock file is open
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
child.start()
print(child.pid, flush=True)
write_gate(sys.argv[1]).__enter__()
os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock; its forked child lives on
"""


def test_a_forked_child_does_not_keep_a_dead_parents_lock(tmp_path) -> None:
    import signal

    from mimir_tui.config import PersistenceSettings

    path = str(tmp_path / "m.db")
    open_backend(PersistenceSettings(database_path=path)).close()
    parent = subprocess.Popen([sys.executable, "-c", FORKING_PARENT, path], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.wait(10)
    backend = open_backend(PersistenceSettings(database_path=path, busy_timeout_ms=500))
    try:
        backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))
    finally:
        os.kill(child, signal.SIGKILL)
        backend.close()


def test_a_child_forked_while_a_thread_holds_the_write_lock_can_write(sqlite_settings) -> None:
    import multiprocessing
    import threading

    from mimir_tui.persistence.gate import write_gate

    backend = open_backend(sqlite_settings)
    path = sqlite_settings.persistence.database_path
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with write_gate(path):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(5)
    try:
        child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(path,))
        child.start()
        time.sleep(0.3)
        done.set()  # the parent lets go; the child, with a lock of its own, writes meanwhile or after
        child.join(15)
        assert child.exitcode == 0
    finally:
        done.set()
        thread.join(5)
        backend.close()


def _child_writes(path: str) -> None:
    from mimir_tui.config import PersistenceSettings

    child_backend = open_backend(PersistenceSettings(database_path=path))
    child_backend.save_execution(JobExecutionRecord(pipeline="child", status="success"))
    child_backend.close()


def test_a_writer_waits_for_another_thread_of_its_process(sqlite_settings) -> None:
    """One gate for threads and processes alike: a thread of this process waits for another
    thread's write as it waits for another process's."""
    import threading

    from mimir_tui.persistence.gate import write_gate

    backend = open_backend(sqlite_settings)
    path = sqlite_settings.persistence.database_path
    held, let_go = threading.Event(), []

    def hold() -> None:
        with write_gate(path):
            held.set()
            time.sleep(0.3)
            let_go.append(time.monotonic())

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    try:
        backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))
        saved_at = time.monotonic()
        thread.join(5)
        assert let_go and saved_at >= let_go[0], "the save went in while another thread held the gate"
    finally:
        thread.join(5)
        backend.close()


def test_database_is_locked_never_reaches_a_user(sqlite_settings) -> None:
    """A program that is not Mimir (the sqlite3 shell) holds SQLite's own write lock past the
    busy timeout: the error names what happened in Mimir's words, and nothing is written."""
    import sqlite3

    sqlite_settings.persistence.busy_timeout_ms = 200
    backend = open_backend(sqlite_settings)
    outsider = sqlite3.connect(sqlite_settings.persistence.database_path, isolation_level=None)
    try:
        outsider.execute("BEGIN IMMEDIATE")
        with pytest.raises(PersistenceError) as err:
            backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))
        message = str(err.value)
        assert "database is locked" not in message and "locked by another program" in message, message
        outsider.execute("ROLLBACK")
        assert backend.list_executions(None, 10) == []
    finally:
        outsider.close()
        backend.close()


@pytest.mark.parametrize("path", ["raw_write", "write"])
def test_writers_leave_wal_checkpoints_to_a_running_retention(tmp_path, path: str) -> None:
    """While a bulk operation runs, a writer's COMMIT must not checkpoint a large WAL (on
    either way of writing): retention checkpoints itself, between batches."""
    from sqlalchemy import text

    from mimir_tui.config import PersistenceSettings
    from mimir_tui.persistence.db import Database
    from mimir_tui.persistence.engine import make_engine

    settings = PersistenceSettings(database_path=str(tmp_path / "m.db"))
    db = Database(make_engine(settings), settings)
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        with db.gate.bulk():
            for _ in range(6):  # some 1,500 pages into the WAL, past the 1,000 of a checkpoint
                with db.raw_write() as tx:
                    tx.cursor.execute("INSERT INTO t VALUES (randomblob(1000000))")
            before = os.path.getsize(settings.database_path)
            if path == "write":
                with db.write() as conn:
                    conn.execute(text("INSERT INTO t VALUES (1)"))
            else:
                with db.raw_write() as tx:
                    tx.cursor.execute("INSERT INTO t VALUES (1)")
            assert os.path.getsize(settings.database_path) == before, "the writer's commit checkpointed"
        with db.raw_write() as tx:  # bulk over: commits checkpoint again
            tx.cursor.execute("INSERT INTO t VALUES (2)")
        assert os.path.getsize(settings.database_path) > before
    finally:
        db.close()
