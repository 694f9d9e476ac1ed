"""The write lock between Mimir processes on one SQLite file (``<database>-mimir.lock``): a
writer of this process waits for another process's writer to finish, and gives up after the
busy timeout with one line, writing nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from mimir_tui.errors import PersistenceError
from mimir_tui.persistence import JobExecutionRecord, open_backend

HOLDER = """
import sys, time
from mimir_tui.persistence import direct
lock = direct.write_lock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
print(repr(time.time()), flush=True)  # the moment it lets go
lock.release()
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
            with pytest.raises(PersistenceError, match="another Mimir process has held its write lock") as err:
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
    """Its writers checkpoint again, and its connection goes back to the pool."""
    import fcntl
    import threading
    from datetime import datetime, timedelta, timezone

    from mimir_tui.config import PersistenceSettings

    path = str(tmp_path / "m.db")
    backend = open_backend(PersistenceSettings(database_path=path, busy_timeout_ms=200))
    try:
        old = datetime.now(timezone.utc) - timedelta(days=100)
        for _ in range(3000):
            backend.save_execution(JobExecutionRecord(pipeline="p", status="success", start_time=old))
        backend.delete_batch_target_s = 0.0005  # many small batches
        lock, out = backend._write_lock, {}

        def run() -> None:
            try:
                backend.delete_old_executions(datetime.now(timezone.utc), batch_size=50)
            except PersistenceError as exc:
                out["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        while lock.deferring == 0 and thread.is_alive():
            time.sleep(0.0005)
        fd = os.open(os.path.realpath(path) + "-mimir.lock", os.O_RDWR)  # another process, as it were
        fcntl.flock(fd, fcntl.LOCK_EX)
        time.sleep(0.7)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        thread.join(10)
        assert "another Mimir process" in str(out.get("error"))
        assert lock.deferring == 0
        assert len(backend._direct._idle) == 1
    finally:
        backend.close()


FORKING_PARENT = """
import multiprocessing, os, signal, sys, time
from mimir_tui.config import PersistenceSettings
from mimir_tui.persistence import JobExecutionRecord, direct, open_backend
backend = open_backend(PersistenceSettings(database_path=sys.argv[1]))
backend.save_execution(JobExecutionRecord(pipeline="p", status="success"))  # the lock file is open
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
child.start()
print(child.pid, flush=True)
direct.write_lock(sys.argv[1]).acquire()
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

    from mimir_tui.persistence import direct

    backend = open_backend(sqlite_settings)
    path = sqlite_settings.persistence.database_path
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with direct.write_lock(path):
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
