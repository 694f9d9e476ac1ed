"""Retention of a long history (issue 13, item 10): ``apply_retention`` deleting 500,000 of a
million executions on SQLite, and their log files, while two writers save an execution every
~10 ms (one in this process on a backend of its own, one in another process): the longest
wait of each writer (target <= 250 ms), and the time against one raw ``DELETE`` of the same
rows on a copy of the file (with a raw writer beside it), measured in the same run.

    python bench/retention.py            # 1,000,000 rows, 500,000 deleted
    python bench/retention.py --quick    # 100,000 rows: a smoke run

The database is filled as ``bench/store.py`` fills its own (a year of runs over 1,000 jobs);
one deleted run in ten has a log file (about 500 bytes) in the log folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import percentile
from store import (
    DELETE_SQL,
    INSERT_SQL,
    Data,
    Report,
    Writer,
    bulk_load,
    copy_db,
    db_time,
    make_template,
    raw_connect,
    raw_row,
    settings_for,
    start_process_writer,
    stop_process_writer,
    writer_record,
)

from mimir_tui.config import Settings
from mimir_tui.ops.retention import apply_retention
from mimir_tui.persistence import open_backend

DAYS = 30


def write_logs(path: Path, folder: Path, cutoff: str) -> int:
    """A log file for one in ten of the runs older than ``cutoff``; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    conn = raw_connect(path)
    ids = [
        r[0] for r in conn.execute("SELECT id FROM job_executions WHERE start_time < ? AND rowid % 10 = 0", (cutoff,))
    ]
    conn.close()
    line = "2024-01-01T00:00:00Z INFO step extract: 1,234 rows from https://api.example.com/orders\n"
    for ident in ids:
        (folder / f"{ident}.log").write_text(line * 6)
    return len(ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows: a smoke run")
    parser.add_argument("--db-dir", type=Path, help="where to put the files (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=20240101)
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else 1_000_000
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="mimir-retention-", dir=args.db_dir))
    started = time.perf_counter()
    report.say(
        f"Mimir retention benchmark ({'quick' if args.quick else 'full'}): Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, files in {workdir}"
    )
    try:
        template, mimir_db, raw_db = workdir / "template.db", workdir / "mimir.db", workdir / "raw.db"
        make_template(template)
        data = Data(args.seed, 1_000)
        copy_db(template, mimir_db)
        median = bulk_load(mimir_db, data, rows, report)
        copy_db(mimir_db, raw_db)
        logs = workdir / "logs" / "executions"
        files = write_logs(mimir_db, logs, db_time(median) or "")
        half = rows // 2
        report.say(f"  {files:,} log files written (not measured)")

        # raw: one DELETE of the same rows; its writer is a sqlite3 connection that waits as long as it must.
        raw = raw_connect(raw_db)
        wconn = raw_connect(raw_db, busy_ms=600_000)

        def raw_save(i: int) -> None:
            rec = writer_record(data, i)
            wconn.execute("BEGIN IMMEDIATE")
            wconn.execute(INSERT_SQL, raw_row(rec.model_dump() | {"updated_at": rec.start_time}))
            wconn.execute("COMMIT")

        raw_writer = Writer(raw_save)
        raw_writer.start()
        raw_writer.started_ev.wait()
        t = time.perf_counter()
        removed_raw = raw.execute(DELETE_SQL, (db_time(median),)).rowcount
        raw_s = time.perf_counter() - t
        time.sleep(0.05)
        raw_writer.stop.set()
        raw_writer.join()
        wconn.close()
        raw.close()

        # Mimir: the same call the CLI, the screen and the scheduled step make.
        settings = Settings(persistence=settings_for(mimir_db))
        settings.logging.executions_dir = str(logs)
        backend = open_backend(settings)
        other = open_backend(settings)
        outside = start_process_writer(mimir_db)
        writer = Writer(lambda i: other.save_execution(writer_record(data, i)))
        writer.start()
        writer.started_ev.wait()
        t = time.perf_counter()
        result = apply_retention(backend, settings, days=DAYS, now=median + timedelta(days=DAYS))
        mimir_s = time.perf_counter() - t
        time.sleep(0.05)
        writer.stop.set()
        writer.join()
        outside_waits, outside_errors = stop_process_writer(outside)
        batches = backend.metrics.snapshot().get("retention_batch", {})
        backend.close()
        other.close()

        left = len(list(logs.iterdir()))
        report.say(
            f"  removed: mimir {result['deleted']:,} rows and {result['log_files']:,} log files "
            f"({result['log_bytes']:,} bytes; {left} left), raw {removed_raw:,} rows"
        )
        if result["deleted"] != half or removed_raw != half or result["log_files"] != files or left:
            report.failed += 1
            report.info(f"  expected {half:,} rows and {files:,} log files removed on each side FAIL")
        report.info(
            f"retention of {half:,} rows (+{files:,} log files): mimir {mimir_s:.2f} s, one raw DELETE "
            f"{raw_s:.2f} s, ratio {mimir_s / raw_s:.2f} (no target: the batches are the price of the writers' waits)"
        )
        report.info(
            f"  {batches.get('count', 0)} batches, p95 {batches.get('p95_ms') or 0:.0f} ms each, "
            f"{half / mimir_s:,.0f} rows/s"
        )
        report.absolute(
            "writer in this process: max wait during retention",
            max(writer.waits) * 1000,
            "ms",
            250,
            f" ({len(writer.waits)} saves, p99 {percentile(writer.waits, 0.99) * 1000:.1f} ms, "
            f"{len(writer.errors)} errors; beside the raw DELETE: max {max(raw_writer.waits) * 1000:.0f} ms)",
        )
        report.absolute(
            "writer in another process: max wait during retention",
            max(outside_waits) * 1000,
            "ms",
            250,
            f" ({len(outside_waits)} saves, p99 {percentile(outside_waits, 0.99) * 1000:.1f} ms, "
            f"{len(outside_errors)} errors)",
        )
        if writer.errors or outside_errors:
            report.failed += 1
            report.info(f"  writer errors: {(writer.errors + outside_errors)[:3]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
