"""8 threads and 2 processes writing one SQLite file: not a single "database is locked"."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mimir_tui.config import Settings
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend

WRITER = Path(__file__).with_name("sqlite_writer.py")
THREADS = 8
PER_THREAD = 200
PROCESSES = 2
PER_PROCESS = 150


@pytest.mark.slow
def test_threads_and_processes_write_one_sqlite_file(sqlite_settings: Settings, tmp_path: Path) -> None:
    sqlite_settings.persistence.busy_timeout_ms = 5000
    db = sqlite_settings.persistence.database_path
    store = open_backend(sqlite_settings)
    try:
        thread_jobs = [
            store.save_job(ScheduledJob(name=f"t{i}", pipeline="p", cron_expr="* * * * *")) for i in range(THREADS)
        ]
        process_jobs = [
            store.save_job(ScheduledJob(name=f"p{i}", pipeline="p", cron_expr="* * * * *")) for i in range(PROCESSES)
        ]

        go = tmp_path / "go"
        procs = []
        readies = []
        for i, job in enumerate(process_jobs):
            ready = tmp_path / f"ready{i}"
            readies.append(ready)
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WRITER), db, job.id, str(PER_PROCESS), str(ready), str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "writer processes did not start"
            time.sleep(0.01)

        errors: list[BaseException] = []
        barrier = threading.Barrier(THREADS + 1)

        def work(job: ScheduledJob) -> None:
            try:
                barrier.wait()
                for k in range(PER_THREAD):
                    run = store.save_execution(JobExecutionRecord(job_id=job.id, pipeline="p", status="running"))
                    if k % 10 == 0:
                        store.request_cancel(run.id)  # a read-then-write transaction
                        store.list_executions(job.id, limit=20)
                    run.status = "success"
                    store.save_execution(run)
                    job.description = str(k)
                    store.update_job(job)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(j,)) for j in thread_jobs]
        for t in threads:
            t.start()
        go.touch()
        barrier.wait()
        for t in threads:
            t.join(timeout=120)
        outputs = [p.communicate(timeout=120) for p in procs]

        assert errors == [], errors[:3]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert "locked" not in err.lower(), err
            assert proc.returncode == 0, err
            assert out.strip() == f"done {PER_PROCESS}"

        counts = store.stats()["row_counts"]
        assert counts["job_executions"] == THREADS * PER_THREAD + PROCESSES * PER_PROCESS
        for job in thread_jobs:
            runs = store.list_executions(job.id, limit=PER_THREAD + 10)
            assert len(runs) == PER_THREAD
            assert all(r.status == "success" for r in runs)
            assert store.get_job(job.id).description == str(PER_THREAD - 1)
        for job in process_jobs:
            assert len(store.list_executions(job.id, limit=PER_PROCESS + 10)) == PER_PROCESS
            assert store.get_job(job.id).description == str(PER_PROCESS - 1)
        snap = store.metrics.snapshot()
        assert all(s["failures"] == 0 for s in snap.values()), snap
    finally:
        store.close()


_LAST_CONNECTION = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("ROLLBACK")
conn.close()
"""


def test_a_second_backend_in_a_process_keeps_the_first_ones_locks(sqlite_settings: Settings) -> None:
    """Opening a second backend on a file this process has open reads nothing of the file
    outside SQLite: a descriptor closed by the process drops every lock the process holds on
    the file, and another program's connection, closing, then takes the file for unused and
    deletes its write-ahead log under the open connections (which then fail with "disk I/O
    error", or read a log of their own that nobody else sees)."""
    db = Path(sqlite_settings.persistence.database_path)
    first = open_backend(sqlite_settings)
    try:
        first.save_job(ScheduledJob(id="before", name="before", pipeline="p", cron_expr="* * * * *"))
        second = open_backend(sqlite_settings)
        second.close()
        subprocess.run([sys.executable, "-c", _LAST_CONNECTION, str(db)], check=True, timeout=30)
        assert db.with_name(db.name + "-wal").exists(), "another program deleted the log under us"
        first.save_job(ScheduledJob(id="after", name="after", pipeline="p", cron_expr="* * * * *"))
        with first.db.write():  # the pooled connection, idle all along, still works
            pass
        assert {j.id for j in first.list_jobs()} == {"before", "after"}
    finally:
        first.close()
    reopened = open_backend(sqlite_settings)
    try:
        assert {j.id for j in reopened.list_jobs()} == {"before", "after"}
    finally:
        reopened.close()
