"""A separate process writing to a SQLite database with its own backend (used by the tests).

    python sqlite_writer.py DATABASE_PATH JOB_ID COUNT READY_FILE GO_FILE

Writes ``COUNT`` executions for ``JOB_ID`` and updates the job after each one; prints
``done <count>`` and exits 0, or prints the error and exits 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(db: str, job_id: str, count: int, ready: str, go: str) -> int:
    from mimir_tui.config import load_settings
    from mimir_tui.persistence import JobExecutionRecord, open_backend

    settings = load_settings(use_search=False, environ={})
    settings.persistence.database_path = db
    store = open_backend(settings)
    try:
        Path(ready).touch()
        deadline = time.monotonic() + 60
        while not Path(go).exists():
            if time.monotonic() > deadline:
                print("never told to go", file=sys.stderr)
                return 1
            time.sleep(0.005)
        job = store.get_job(job_id)
        for i in range(count):
            run = store.save_execution(JobExecutionRecord(job_id=job_id, pipeline="p", status="running"))
            run.status = "success"
            store.save_execution(run)
            job.description = f"{i}"
            store.update_job(job)
        print(f"done {count}")
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
