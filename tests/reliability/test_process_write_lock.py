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
