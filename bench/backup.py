#!/usr/bin/env python3
"""Online backup of a 1 GB SQLite database against the ``sqlite3`` command line's ``.backup``
of the same file, in one run.

    python bench/backup.py               # 1 GB (built once, cached in /tmp/mimir-bench-backup)
    python bench/backup.py --size-mb 200 # a smaller database, for a quick look

The database has Mimir's schema (made by Mimir) and executions with 4 KiB of text each, loaded
with ``executemany``; it is kept between runs. Then, each on a warm page cache:

- *baseline*: ``sqlite3 DB ".backup COPY"``, the command line's online backup (no writer: with
  one, its backup restarts at every commit of another connection and may never end);
- *snapshot*: Mimir's online copy alone (:func:`~mimir_tui.ops.backup.sqlite_copy`, the backup
  API in steps inside one read transaction);
- *create*: ``create_backup`` without its verification (the copy, the row counts and the
  archive with its SHA-256s: what ``backup create`` costs before it checks its work), with and
  without another process writing an execution every ~10 ms through Mimir (its longest wait);
- *verify*: ``verify_backup`` of that archive (read, checksums, integrity check, counts).

Targets (issue 13): the online copy at most 1.3x the command line's ``.backup`` (the same
work: a consistent copy of the database into a file); no write waits over 500 ms during a
create. The whole create (the copy, then the archive with the SHA-256 of every member, then
fsync) and the verification are reported beside it: hashing 1 GB and writing it once more
are what they add. Exit status: 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import store

from mimir_tui.config import Settings
from mimir_tui.ops.backup import create_backup, sqlite_copy, verify_backup

CACHE = Path("/tmp/mimir-bench-backup")
ROW_TEXT = 4096


def build(path: Path, size_mb: int, report: common.Report) -> None:
    """Mimir's schema, then executions of ~4 KiB until the file holds ``size_mb`` MB."""
    started = time.perf_counter()
    store.make_template(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    rows_wanted = size_mb * 1_000_000 // (ROW_TEXT + 300)
    batch = 5000
    for first in range(0, rows_wanted, batch):
        conn.executemany(
            "INSERT INTO job_executions (id, pipeline, start_time, status, error, triggered_by, attempt, "
            "cancel_requested) VALUES (?, 'bench', '2024-01-01 00:00:00.000000', 'success', ?, 'manual', 1, 0)",
            (
                (f"bench-{i:09d}", os.urandom(ROW_TEXT // 2).hex())
                for i in range(first, min(first + batch, rows_wanted))
            ),
        )
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    report.say(f"  built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s")


def database(size_mb: int, report: common.Report) -> Path:
    CACHE.mkdir(mode=0o700, exist_ok=True)
    path = CACHE / f"mimir-{size_mb}mb.db"
    if not path.exists() or path.stat().st_size < size_mb * 1_000_000 * 0.9:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        build(path, size_mb, report)
    else:
        report.say(f"  cached {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return path


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = common.Report()
    cli = shutil.which("sqlite3")
    if cli is None:
        report.say("the sqlite3 command line is missing: apt-get install -y sqlite3")
        return 1
    db = database(args.size_mb, report)
    work = Path(tempfile.mkdtemp(prefix="mimir-bench-backup-", dir=CACHE))
    try:
        settings = Settings()
        settings.persistence.database_path = str(db)
        settings.persistence.backup_path = str(work / "backups")
        settings.persistence.enable_vector_db = False
        settings.pipelines.directory = str(work / "none")
        warm(db)
        size = db.stat().st_size / 1e6

        def cli_backup() -> None:
            target = work / "cli.db"
            target.unlink(missing_ok=True)
            subprocess.run([cli, str(db), f".backup '{target}'"], check=True)

        def snapshot() -> None:
            target = work / "snap.db"
            target.unlink(missing_ok=True)
            sqlite_copy(db, target)

        def create() -> Path:
            return create_backup(settings, verify=False, rotate=False).path

        baseline = min(timed(cli_backup) for _ in range(2))
        report.info(f"sqlite3 .backup of {size:.0f} MB: {baseline:.2f} s")
        snap = min(timed(snapshot) for _ in range(2))
        report.target(f"Mimir's online copy: {snap:.2f} s = {snap / baseline:.2f}x", snap / baseline, 1.3, "x")
        made: list[Path] = []
        quiet = min(timed(lambda: made.append(create())) for _ in range(2))
        report.info(
            f"backup create (copy + archive with SHA-256s + fsync, no verify): {quiet:.2f} s = {quiet / baseline:.2f}x"
        )

        writer = store.start_process_writer(db)
        try:
            busy = timed(lambda: made.append(create()))
        finally:
            waits, errors = store.stop_process_writer(writer)
        longest = max(waits) * 1000 if waits else float("nan")
        report.info(f"backup create with a writer: {busy:.2f} s = {busy / baseline:.2f}x")
        report.target(
            f"longest write wait during it: {longest:.0f} ms ({len(waits)} writes, p99 "
            f"{common.percentile(waits, 0.99) * 1000:.0f} ms, {len(errors)} errors)",
            longest,
            500,
            " ms",
        )
        checked = timed(lambda: verify_backup(settings, made[-1]))
        report.info(f"backup verify: {checked:.2f} s ({checked / baseline:.2f}x the .backup)")
        report.info(f"  archive {made[-1].stat().st_size / 1e6:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
