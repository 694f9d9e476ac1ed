#!/usr/bin/env python3
"""Mimir's execution store against raw ``sqlite3``: same schema, same pragmas, one run.

    python bench/store.py            # the full run (a few minutes)
    python bench/store.py --quick    # smaller sizes, a smoke run

Both sides work on their own copy of one database file whose schema Mimir made (tables,
indexes and the Alembic version row), opened with the same pragmas: WAL, synchronous=NORMAL,
foreign_keys=ON, busy_timeout and cache_size. The raw side is plain ``sqlite3``; the Mimir side
goes through the public :class:`~mimir_tui.persistence.PersistenceBackend` API and gets model objects back.

a. ``save_execution``: N records, one transaction each, against ``BEGIN IMMEDIATE; INSERT;
   COMMIT`` with the same column values (serialised before the clock starts).
b. A page of 50 on 1,000,000 rows over 1,000 jobs: ``executions.page(job, 50)`` (lean rows)
   against the same SELECT of the same columns with ``fetchall``, p99 latency (target 1.5x);
   and ``list_executions(job, 50)`` (whole records) with every field read, against the same
   rows fetched raw and decoded the same way (target 2x); EXPLAIN QUERY PLAN of Mimir's
   statement.
c. ``delete_old_executions`` removing half of the rows, against one raw DELETE, while a
   writer thread saves an execution every 10 ms through a connection of its own.

Timed runs carry no instrumentation. Memory is measured apart: the tracemalloc peak (Python
heap) of a short extra pass of each phase on each side, and the growth of the process's
ru_maxrss (resident high-water mark, so it shows only growth beyond the earlier peak) over each
timed phase. Exit status: 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common
from common import percentile
from sqlalchemy import event

from mimir_tui.config import PersistenceSettings
from mimir_tui.persistence import JobExecutionRecord, PersistenceBackend, open_backend
from mimir_tui.persistence.engine import SQLITE_CACHE_KIB
from mimir_tui.persistence.models import EXECUTIONS
from mimir_tui.persistence.rows import ExecutionRow
from mimir_tui.persistence.types import json_value, sqlite_datetime_value

BUSY_MS = 5000
COLUMNS = [c.name for c in EXECUTIONS.columns]
COLS = ", ".join(COLUMNS)
INSERT_SQL = f"INSERT INTO job_executions ({COLS}) VALUES ({', '.join('?' * len(COLUMNS))})"
LIST_SQL = f"SELECT {COLS} FROM job_executions WHERE job_id = ? ORDER BY start_time DESC, id DESC LIMIT ?"
PAGE_SQL = (
    f"SELECT {', '.join(ExecutionRow.COLUMNS)} FROM job_executions WHERE job_id = ? "
    f"ORDER BY start_time DESC, id DESC LIMIT ?"
)
DELETE_SQL = "DELETE FROM job_executions WHERE start_time < ?"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Sizes:
    saves: int = 20_000
    rows: int = 1_000_000
    jobs: int = 1_000
    queries: int = 5_000
    limit: int = 50


QUICK = Sizes(saves=2_000, rows=100_000, jobs=1_000, queries=1_000)


class Report(common.Report):
    def figure(self, name: str, mimir: float, raw: float, unit: str, target: float) -> None:
        ratio = mimir / raw if raw > 0 else math.inf
        ok = ratio <= target
        self.failed += not ok
        line = (
            f"{name}: mimir {mimir:.3f} {unit}, raw {raw:.3f} {unit}, ratio {ratio:.2f} "
            f"(target <= {target:g}) {'PASS' if ok else 'FAIL'}"
        )
        self.lines.append(line)
        self.say(line)

    def absolute(self, name: str, value: float, unit: str, target: float, note: str = "") -> None:
        ok = value <= target
        self.failed += not ok
        line = f"{name}: mimir {value:.1f} {unit} (target <= {target:g} {unit}) {'PASS' if ok else 'FAIL'}{note}"
        self.lines.append(line)
        self.say(line)


# -- databases ------------------------------------------------------------------------------


def settings_for(path: Path) -> PersistenceSettings:
    return PersistenceSettings(database_path=str(path), busy_timeout_ms=BUSY_MS)


def raw_connect(path: Path, busy_ms: int = BUSY_MS) -> sqlite3.Connection:
    """A plain sqlite3 connection with the pragmas Mimir sets on each of its connections."""
    conn = sqlite3.connect(str(path), timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    return conn


PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size")


def raw_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in PRAGMAS}


def mimir_pragmas(backend: PersistenceBackend) -> dict[str, Any]:
    with backend.engine.connect() as conn:
        return {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in PRAGMAS}


def make_template(path: Path) -> None:
    """An empty database with Mimir's schema, made by Mimir (migrations and all)."""
    backend = open_backend(settings_for(path))
    backend.close()
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def copy_db(src: Path, dst: Path) -> None:
    """A copy, flushed to disk: else the first checkpoint's fsync, on whichever side comes
    first, would pay for writing out the whole copy."""
    for suffix in ("-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def schema_of(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


# -- data -----------------------------------------------------------------------------------


def db_time(value: datetime | None) -> str | None:
    """A datetime as Mimir stores it on SQLite: naive UTC text with microseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def db_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Data:
    """Jobs and executions, the same for both sides, from a fixed seed."""

    def __init__(self, seed: int, jobs: int) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.job_ids = [f"{rng.getrandbits(128):032x}" for _ in range(jobs)]
        self.job_names = [f"job-{i:04d}" for i in range(jobs)]

    def insert_jobs(self, conn: sqlite3.Connection) -> None:
        now = db_time(T0)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO scheduled_jobs (id, name, pipeline, cron_expr, enabled, created_at, updated_at,"
            " description) VALUES (?, ?, ?, ?, 1, ?, ?, '')",
            [
                (jid, self.job_names[i], f"pipeline-{i % 50:02d}", "*/5 * * * *", now, now)
                for i, jid in enumerate(self.job_ids)
            ],
        )
        conn.execute("COMMIT")

    def executions(self, n: int, *, start: datetime, span: timedelta, seed_offset: int) -> Iterator[dict[str, Any]]:
        """n executions with strictly increasing start times over ``span`` from ``start``."""
        rng = random.Random(self.seed * 1000 + seed_offset)
        step_us = int(span.total_seconds() * 1_000_000) // n
        jobs = len(self.job_ids)
        for i in range(n):
            st = start + timedelta(microseconds=i * step_us + rng.randrange(step_us // 2))
            j = rng.randrange(jobs)
            d1 = rng.randrange(50, 20_000)
            d2 = rng.randrange(50, 60_000)
            failed = rng.random() < 0.08
            mid = st + timedelta(milliseconds=d1)
            end = mid + timedelta(milliseconds=d2)
            pipeline = f"pipeline-{j % 50:02d}"
            batch = rng.randrange(100_000)
            yield {
                "id": f"{int(st.timestamp() * 1000):012x}{rng.getrandbits(80):020x}",
                "job_id": self.job_ids[j],
                "pipeline": pipeline,
                "start_time": st,
                "end_time": end,
                "duration": d1 + d2,
                "status": "failed" if failed else "success",
                "error": "step 2 (load) failed: connection reset by peer" if failed else None,
                "context": {
                    "trigger": "scheduler",
                    "job": self.job_names[j],
                    "params": {"batch": batch, "source": f"s3://mimir-data/{pipeline}/part-{batch:05d}.parquet"},
                },
                "steps": [
                    {
                        "step_name": "extract",
                        "plugin": "Input.api",
                        "start_time": st.isoformat(),
                        "end_time": mid.isoformat(),
                        "duration": d1,
                        "status": "success",
                        "error": None,
                        "input": None,
                        "output": {"rows": batch % 5000},
                    },
                    {
                        "step_name": "load",
                        "plugin": "Output.sqlite",
                        "start_time": mid.isoformat(),
                        "end_time": end.isoformat(),
                        "duration": d2,
                        "status": "failed" if failed else "success",
                        "error": "connection reset by peer" if failed else None,
                        "input": None,
                        "output": None if failed else {"written": batch % 5000},
                    },
                ],
                "triggered_by": "scheduler",
                "scheduled_for": st.replace(microsecond=0),
                "attempt": 1,
                "worker_id": "mimir-host-1:4242",
                "cancel_requested": False,
                "updated_at": end,
            }


def raw_row(values: dict[str, Any]) -> tuple:
    """The column values Mimir writes for ``values``, in column order."""
    out = []
    for name in COLUMNS:
        v = values[name]
        if isinstance(v, datetime):
            v = db_time(v)
        elif name in ("context", "steps"):
            v = db_json(v)
        elif isinstance(v, bool):
            v = int(v)
        out.append(v)
    return tuple(out)


def bulk_rows(data: Data, n: int, *, span: timedelta = timedelta(days=365), seed_offset: int = 2) -> Iterator[tuple]:
    """n rows as Mimir stores them, like :meth:`Data.executions` but fast (text templates rather
    than dicts and json.dumps: the load of a million rows is not what is measured)."""
    rng = random.Random(data.seed * 1000 + seed_offset)
    randrange, getrandbits, rand = rng.randrange, rng.getrandbits, rng.random
    step_us = int(span.total_seconds() * 1_000_000) // n
    half = step_us // 2
    jobs, names, nj = data.job_ids, data.job_names, len(data.job_ids)
    t0 = T0.replace(tzinfo=None)
    t0_ms = int(T0.timestamp() * 1000)
    ctx = '{"trigger":"scheduler","job":"%s","params":{"batch":%d,"source":"s3://mimir-data/%s/part-%05d.parquet"}}'
    steps = (
        '[{"step_name":"extract","plugin":"Input.api","start_time":"%s+00:00","end_time":"%s+00:00",'
        '"duration":%d,"status":"success","error":null,"input":null,"output":{"rows":%d}},'
        '{"step_name":"load","plugin":"Output.sqlite","start_time":"%s+00:00","end_time":"%s+00:00",'
        '"duration":%d,"status":"%s","error":%s,"input":null,"output":%s}]'
    )
    td = timedelta
    for i in range(n):
        offset = i * step_us + randrange(half)
        st = t0 + td(microseconds=offset)
        j = randrange(nj)
        d1, d2 = randrange(50, 20_000), randrange(50, 60_000)
        failed = rand() < 0.08
        mid = st + td(milliseconds=d1)
        end = mid + td(milliseconds=d2)
        pipeline = f"pipeline-{j % 50:02d}"
        batch = randrange(100_000)
        st_db, end_db = st.isoformat(" ", "microseconds"), end.isoformat(" ", "microseconds")
        st_iso, mid_iso, end_iso = (x.isoformat("T", "microseconds") for x in (st, mid, end))
        status = "failed" if failed else "success"
        yield (
            f"{t0_ms + offset // 1000:012x}{getrandbits(80):020x}",
            jobs[j],
            pipeline,
            st_db,
            end_db,
            d1 + d2,
            status,
            "step 2 (load) failed: connection reset by peer" if failed else None,
            ctx % (names[j], batch, pipeline, batch),
            steps
            % (
                st_iso,
                mid_iso,
                d1,
                batch % 5000,
                mid_iso,
                end_iso,
                d2,
                status,
                '"connection reset by peer"' if failed else "null",
                "null" if failed else f'{{"written":{batch % 5000}}}',
            ),
            "scheduler",
            st_db[:19] + ".000000",
            1,
            "mimir-host-1:4242",
            0,
            end_db,
        )


def bulk_load(path: Path, data: Data, rows: int, report: Report) -> datetime:
    """Fill ``path`` with ``rows`` executions over a year; returns the start time of the row in
    the middle (exactly half the rows start before it). The secondary indexes are dropped for
    the load and made again after it, with their own SQL: the schema stays Mimir's."""
    started = time.perf_counter()
    conn = raw_connect(path)
    conn.execute("PRAGMA cache_size = -262144")  # this connection only: a fast load
    data.insert_jobs(conn)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'job_executions' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    gen = bulk_rows(data, rows)
    chunk = 50_000
    while True:
        batch = list(itertools.islice(gen, chunk))
        if not batch:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, batch)
        conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    median = conn.execute(
        "SELECT start_time FROM job_executions ORDER BY start_time LIMIT 1 OFFSET ?", (rows // 2,)
    ).fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    report.say(
        f"  loaded {rows:,} executions over {len(data.job_ids):,} jobs"
        f" in {time.perf_counter() - started:.1f} s (not measured)"
    )
    return datetime.fromisoformat(median).replace(tzinfo=UTC)


# -- measuring helpers ----------------------------------------------------------------------


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def traced_peak(fn: Callable[[], Any]) -> float:
    """Peak Python heap (tracemalloc) above its level at the start, in KiB."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / 1024


def interleaved(jobs: list[str], mimir: Callable[[str], Any], raw: Callable[[str], Any]) -> tuple[list, list]:
    """Each side once per job, each first every other time; the two lists of results."""
    out_m, out_r = [], []
    for i, job in enumerate(jobs):
        if i % 2:
            out_m.append(mimir(job))
            out_r.append(raw(job))
        else:
            out_r.append(raw(job))
            out_m.append(mimir(job))
    return out_m, out_r


def memory_line(report: Report, phase: str, mimir_kib: float, raw_kib: float, rss_delta: float, what: str) -> None:
    report.info(
        f"memory {phase}: tracemalloc peak ({what}) mimir {mimir_kib:,.0f} KiB, raw {raw_kib:,.0f} KiB; "
        f"ru_maxrss growth over the timed phase {rss_delta:+.1f} MiB"
    )


# -- a. save_execution ----------------------------------------------------------------------


def phase_save(workdir: Path, template: Path, data: Data, sizes: Sizes, report: Report) -> None:
    n = sizes.saves
    report.say(f"\n== a. save_execution: {n:,} records, one transaction each")
    mimir_db, raw_db = workdir / "save-mimir.db", workdir / "save-raw.db"
    for path in (mimir_db, raw_db):
        copy_db(template, path)
        conn = raw_connect(path)
        data.insert_jobs(conn)
        conn.close()
    values = list(data.executions(n + 2_000, start=T0, span=timedelta(days=30), seed_offset=1))
    timed, extra = values[:n], values[n:]
    # Built before the clock starts on both sides: model objects for Mimir, rows for sqlite3.
    records = [JobExecutionRecord(**v) for v in timed]
    rows = [raw_row(v) for v in timed]
    # Mimir sets updated_at itself when it saves; the raw rows carry a fixed one.
    backend = open_backend(settings_for(mimir_db))
    raw = raw_connect(raw_db)
    report.say(f"  pragmas: mimir {mimir_pragmas(backend)}, raw {raw_pragmas(raw)}")

    save = backend.save_execution
    execute = raw.execute
    # Warm both paths (statement caches, first pages), then interleave chunks so that drift
    # in machine speed falls on both sides alike.
    mimir_s = raw_s = 0.0
    chunk = max(1, n // 20)
    rss0 = maxrss_mib()
    gc.collect()
    for lo in range(0, n, chunk):
        t = time.perf_counter()
        for rec in records[lo : lo + chunk]:
            save(rec)
        mimir_s += time.perf_counter() - t
        t = time.perf_counter()
        for row in rows[lo : lo + chunk]:
            execute("BEGIN IMMEDIATE")
            execute(INSERT_SQL, row)
            execute("COMMIT")
        raw_s += time.perf_counter() - t
    rss1 = maxrss_mib()

    # Same column values on both sides (updated_at aside).
    sample = [r.id for r in records[:: max(1, n // 50)]]
    check = raw_connect(mimir_db)
    mismatches = 0
    for rid in sample:
        a = check.execute(f"SELECT {COLS} FROM job_executions WHERE id = ?", (rid,)).fetchone()
        b = raw.execute(f"SELECT {COLS} FROM job_executions WHERE id = ?", (rid,)).fetchone()
        mismatches += a[:-1] != b[:-1]
    count_m = check.execute("SELECT count(*) FROM job_executions").fetchone()[0]
    count_r = raw.execute("SELECT count(*) FROM job_executions").fetchone()[0]
    check.close()
    report.say(f"  rows: mimir {count_m:,}, raw {count_r:,}; sampled rows with different values: {mismatches}")
    if mismatches or count_m != count_r:
        report.failed += 1
        report.info("save_execution: the two sides wrote different rows FAIL")

    report.figure(f"save_execution x{n} total", mimir_s, raw_s, "s", 2.5)
    report.info(f"  per record: mimir {mimir_s / n * 1e6:.1f} us, raw {raw_s / n * 1e6:.1f} us")

    extra_records = [JobExecutionRecord(**v) for v in extra[:1000]]
    extra_rows = [raw_row(v) for v in extra[1000:]]

    def mimir_pass() -> None:
        for rec in extra_records:
            save(rec)

    def raw_pass() -> None:
        for row in extra_rows:
            execute("BEGIN IMMEDIATE")
            execute(INSERT_SQL, row)
            execute("COMMIT")

    memory_line(
        report, "a. save_execution", traced_peak(mimir_pass), traced_peak(raw_pass), rss1 - rss0, "1,000 more saves"
    )
    backend.close()
    raw.close()
    for path in (mimir_db, raw_db):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- b. list_executions ---------------------------------------------------------------------


def mimir_list_sql(path: Path, job_id: str, limit: int) -> str:
    """The statement Mimir sends for list_executions, as SQLite receives it."""
    backend = open_backend(settings_for(path))
    seen: list[str] = []

    @event.listens_for(backend.engine, "connect")
    def _trace(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(seen.append)

    backend.engine.dispose()  # the connections made before the listener: gone
    backend.list_executions(job_id, limit)
    backend.close()
    selects = [s for s in seen if "FROM job_executions" in s and s.lstrip().upper().startswith("SELECT")]
    return selects[-1]


def query_plan(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[str]:
    return [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]


def phase_list(data: Data, sizes: Sizes, report: Report, mimir_db: Path, raw_db: Path) -> None:
    q, limit = sizes.queries, sizes.limit
    report.say(f"\n== b. list_executions(job, {limit}) on {sizes.rows:,} rows over {sizes.jobs:,} jobs, {q:,} queries")
    rng = random.Random(data.seed + 3)
    jobs = [rng.choice(data.job_ids) for _ in range(q)]

    raw = raw_connect(raw_db)
    sent = mimir_list_sql(mimir_db, jobs[0], limit)
    report.say(f"  mimir sends: {sent}")
    plan_mimir = query_plan(raw, sent)
    plan_raw = query_plan(raw, LIST_SQL, (jobs[0], limit))
    report.say("  EXPLAIN QUERY PLAN (mimir's statement):")
    for line in plan_mimir:
        report.say(f"    {line}")
    report.say("  EXPLAIN QUERY PLAN (raw statement):")
    for line in plan_raw:
        report.say(f"    {line}")
    scans = [p for p in plan_mimir if p.startswith("SCAN") and "USING" not in p]
    uses_index = any("USING INDEX" in p or "USING COVERING INDEX" in p for p in plan_mimir)
    ok = uses_index and not scans
    report.failed += not ok
    report.info(f"list_executions query plan: {'index, no table scan PASS' if ok else 'table scan FAIL'}")

    backend = open_backend(settings_for(mimir_db))
    list_executions = backend.list_executions
    page = backend.executions.page
    execute = raw.execute
    # Same answers.
    for job in jobs[:20]:
        got = [r.id for r in list_executions(job, limit)]
        lean = [r.id for r in page(job, limit)]
        want = [row[0] for row in execute(LIST_SQL, (job, limit)).fetchall()]
        if not got == lean == want:
            report.failed += 1
            report.info(f"list_executions: mimir and raw disagree for job {job} FAIL")
            break
    # Warm both (page cache, statement caches), then interleave query by query, each side
    # first every other time. Wall-clock latency is the figure; the CPU time of the thread
    # (which a preemption by another process does not inflate) is printed beside it.
    for job in jobs[: min(500, q)]:
        page(job, limit)
        list_executions(job, limit)
        execute(PAGE_SQL, (job, limit)).fetchall()
        execute(LIST_SQL, (job, limit)).fetchall()

    perf, cpu = time.perf_counter, time.thread_time
    ms = lambda xs, q_: percentile(xs, q_) * 1000  # noqa: E731

    def cpu_and_wall(fn: Callable[[str], Any]) -> Callable[[str], tuple[float, float]]:
        def timed(job: str) -> tuple[float, float]:
            w, c = perf(), cpu()
            fn(job)
            return perf() - w, cpu() - c

        return timed

    rss0 = maxrss_mib()
    gc.collect()
    lean_m, lean_r = interleaved(
        jobs,
        cpu_and_wall(lambda job: page(job, limit)),
        cpu_and_wall(lambda job: execute(PAGE_SQL, (job, limit)).fetchall()),
    )
    rss1 = maxrss_mib()
    wall_m, wall_r = [w for w, _ in lean_m], [w for w, _ in lean_r]
    cpu_m, cpu_r = [c for _, c in lean_m], [c for _, c in lean_r]
    report.figure(f"page of {limit} lean rows (executions.page) p99", ms(wall_m, 0.99), ms(wall_r, 0.99), "ms", 1.5)
    report.info(
        f"  p50: mimir {ms(wall_m, 0.5):.3f} ms, raw {ms(wall_r, 0.5):.3f} ms, ratio "
        f"{ms(wall_m, 0.5) / ms(wall_r, 0.5):.2f}; CPU time of the calling thread p99: mimir {ms(cpu_m, 0.99):.3f} ms, "
        f"raw {ms(cpu_r, 0.99):.3f} ms (ratio {ms(cpu_m, 0.99) / ms(cpu_r, 0.99):.2f})"
    )

    # Full records (list_executions) with every field read, against the same rows fetched raw
    # and decoded the same way (fromisoformat for the times, orjson for the JSON, bool).
    names = COLUMNS
    converters = [
        (i, conv)
        for i, conv in enumerate(
            sqlite_datetime_value
            if n in ("start_time", "end_time", "scheduled_for", "updated_at")
            else json_value
            if n in ("context", "steps")
            else bool
            if n == "cancel_requested"
            else None
            for n in names
        )
        if conv is not None
    ]

    def read_all_mimir(job: str) -> float:
        w = perf()
        for rec in list_executions(job, limit):
            for n in names:
                getattr(rec, n)
        return perf() - w

    def read_all_raw(job: str) -> float:
        w = perf()
        for row in execute(LIST_SQL, (job, limit)).fetchall():
            values = list(row)
            for i, conv in converters:
                if values[i] is not None:
                    values[i] = conv(values[i])
            for _value in values:
                pass
        return perf() - w

    full_m, full_r = interleaved(jobs[: min(q, 2000)], read_all_mimir, read_all_raw)
    report.figure(
        f"list_executions(job, {limit}) whole records, every field read, p99",
        ms(full_m, 0.99),
        ms(full_r, 0.99),
        "ms",
        2.0,
    )
    report.info(
        f"  p50: mimir {ms(full_m, 0.5):.3f} ms, raw + the same conversions {ms(full_r, 0.5):.3f} ms "
        f"(ratio {ms(full_m, 0.5) / ms(full_r, 0.5):.2f})"
    )

    def mimir_pass() -> None:
        for job in jobs[:300]:
            list_executions(job, limit)

    def raw_pass() -> None:
        for job in jobs[:300]:
            execute(LIST_SQL, (job, limit)).fetchall()

    memory_line(
        report, "b. list_executions", traced_peak(mimir_pass), traced_peak(raw_pass), rss1 - rss0, "300 queries"
    )
    backend.close()
    raw.close()


# -- c. delete_old_executions ---------------------------------------------------------------


class Writer(threading.Thread):
    """Saves an execution every ~10 ms; records how long each save waited."""

    def __init__(self, save: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self.save = save
        self.waits: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.started_ev = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                self.save(i)
            except Exception as exc:  # noqa: BLE001 - reported
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.waits.append(time.perf_counter() - t)
            self.started_ev.set()
            i += 1
            self.stop.wait(0.01)


def writer_record(data: Data, i: int) -> JobExecutionRecord:
    now = datetime.now(UTC)
    return JobExecutionRecord(
        job_id=data.job_ids[i % len(data.job_ids)],
        pipeline="pipeline-00",
        start_time=now,
        end_time=now,
        duration=0,
        status="success",
        triggered_by="manual",
        context={"writer": i},
        steps=[],
    )


def phase_delete(data: Data, sizes: Sizes, report: Report, median: datetime, mimir_db: Path, raw_db: Path) -> None:
    half = sizes.rows // 2
    report.say(f"\n== c. delete_old_executions: {half:,} of {sizes.rows:,} rows, a writer saving every 10 ms")
    cutoff_text = db_time(median)

    # raw: one DELETE; its writer is a sqlite3 connection that waits as long as it must.
    raw = raw_connect(raw_db)
    wconn = raw_connect(raw_db, busy_ms=600_000)

    def raw_save(i: int) -> None:
        rec = writer_record(data, i)
        row = raw_row(rec.model_dump() | {"updated_at": rec.start_time})
        wconn.execute("BEGIN IMMEDIATE")
        wconn.execute(INSERT_SQL, row)
        wconn.execute("COMMIT")

    raw_writer = Writer(raw_save)
    raw_writer.start()
    raw_writer.started_ev.wait()
    rss0 = maxrss_mib()
    t = time.perf_counter()
    removed_raw = raw.execute(DELETE_SQL, (cutoff_text,)).rowcount
    raw_s = time.perf_counter() - t
    time.sleep(0.05)
    raw_writer.stop.set()
    raw_writer.join()
    wconn.close()

    # mimir: the API call; its writers are a second backend in this process (its own engine
    # and connections) and a Mimir backend in another process.
    backend = open_backend(settings_for(mimir_db))
    other = open_backend(settings_for(mimir_db))
    outside = start_process_writer(mimir_db)
    mimir_writer = Writer(lambda i: other.save_execution(writer_record(data, i)))
    mimir_writer.start()
    mimir_writer.started_ev.wait()
    t = time.perf_counter()
    removed_mimir = backend.delete_old_executions(median)
    mimir_s = time.perf_counter() - t
    time.sleep(0.05)
    mimir_writer.stop.set()
    mimir_writer.join()
    outside_waits, outside_errors = stop_process_writer(outside)
    rss1 = maxrss_mib()

    report.say(f"  removed: mimir {removed_mimir:,}, raw {removed_raw:,}")
    if removed_mimir != half or removed_raw != half:
        report.failed += 1
        report.info(f"delete_old_executions removed {removed_mimir:,} (raw {removed_raw:,}), expected {half:,} FAIL")
    report.figure(f"delete_old_executions {half} rows total", mimir_s, raw_s, "s", 2.0)
    ops = backend.metrics.snapshot().get("delete_old_executions", {})
    report.info(f"  counted in metrics: delete_old_executions count={ops.get('count')}")
    errors = mimir_writer.errors
    report.absolute(
        "concurrent writer max wait during delete",
        max(mimir_writer.waits) * 1000,
        "ms",
        250,
        f" ({len(mimir_writer.waits)} saves, p99 {percentile(mimir_writer.waits, 0.99) * 1000:.1f} ms, "
        f"{len(errors)} errors; raw single DELETE: writer max wait {max(raw_writer.waits) * 1000:.1f} ms"
        f" over {len(raw_writer.waits)} saves, {len(raw_writer.errors)} errors)",
    )
    report.absolute(
        "writer in another process: max wait during delete",
        max(outside_waits) * 1000,
        "ms",
        250,
        f" ({len(outside_waits)} saves, p99 {percentile(outside_waits, 0.99) * 1000:.1f} ms, "
        f"{len(outside_errors)} errors)",
    )
    errors = errors + outside_errors
    if errors:
        report.failed += 1
        report.info(f"  writer errors: {errors[:3]}")

    # Memory: the next tenth of the rows, once more on each side, under tracemalloc.
    nxt = datetime.fromisoformat(
        raw.execute(
            "SELECT start_time FROM job_executions ORDER BY start_time LIMIT 1 OFFSET ?", (sizes.rows // 10,)
        ).fetchone()[0]
    ).replace(tzinfo=UTC)
    mimir_kib = traced_peak(lambda: backend.delete_old_executions(nxt))
    raw_kib = traced_peak(lambda: raw.execute(DELETE_SQL, (db_time(nxt),)))
    memory_line(
        report,
        "c. delete_old_executions",
        mimir_kib,
        raw_kib,
        rss1 - rss0,
        f"deleting the next {sizes.rows // 10:,} rows",
    )
    backend.close()
    other.close()
    raw.close()


PROCESS_WRITER = """
import json, sys, time
from datetime import datetime, timezone
from mimir_tui.config import PersistenceSettings
from mimir_tui.persistence import JobExecutionRecord, open_backend
backend = open_backend(PersistenceSettings(database_path=sys.argv[1], busy_timeout_ms=int(sys.argv[2])))
backend.save_execution(JobExecutionRecord(pipeline="outside", status="success"))  # connected, warm
print("ready", flush=True)
waits, errors = [], []
import select
while not select.select([sys.stdin], [], [], 0.01)[0]:  # until the parent closes our stdin
    t = time.perf_counter()
    try:
        backend.save_execution(JobExecutionRecord(pipeline="outside", status="success",
                                                  start_time=datetime.now(timezone.utc)))
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    waits.append(time.perf_counter() - t)
print(json.dumps({"waits": waits, "errors": errors}), flush=True)
"""


def start_process_writer(path: Path) -> Any:
    """A Mimir backend in another process saving an execution every ~10 ms (started, warm)."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-c", PROCESS_WRITER, str(path), str(BUSY_MS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def stop_process_writer(proc: Any) -> tuple[list[float], list[str]]:
    out, _ = proc.communicate("", timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    return result["waits"], result["errors"]


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument("--db-dir", type=Path, help="where to put the database files (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    parser.add_argument("--seed", type=int, default=20240101)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    report = Report()

    if args.db_dir:
        args.db_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="mimir-bench-", dir=args.db_dir))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="mimir-bench-"))
    started = time.perf_counter()
    report.say(
        f"Mimir store benchmark ({'quick' if args.quick else 'full'}): Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, files in {workdir}"
    )
    try:
        template = workdir / "template.db"
        make_template(template)
        data = Data(args.seed, sizes.jobs)

        phase_save(workdir, template, data, sizes, report)

        big = workdir / "big.db"
        copy_db(template, big)
        median = bulk_load(big, data, sizes.rows, report)
        mimir_db, raw_db = workdir / "mimir.db", workdir / "raw.db"
        copy_db(big, mimir_db)
        copy_db(big, raw_db)
        big.unlink()
        same = schema_of(mimir_db) == schema_of(raw_db) == schema_of(template)
        report.say(f"  schema identical on both sides: {same}")
        if not same:
            report.failed += 1

        phase_list(data, sizes, report, mimir_db, raw_db)
        phase_delete(data, sizes, report, median, mimir_db, raw_db)
    finally:
        if args.keep:
            report.say(f"\nfiles kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
