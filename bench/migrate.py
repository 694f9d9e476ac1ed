#!/usr/bin/env python3
"""``mimir-tui migrate``'s copy (mimir_tui.ops.tables) against a plain driver copy, one run.

    python bench/migrate.py            # 100,000 executions
    python bench/migrate.py --quick    # 10,000, a smoke run

A SQLite database gets N executions (three steps of JSON each, as the pipelines write them),
made by Mimir. Then:

a. the baseline: ``job_executions`` read with plain ``sqlite3`` (fetchmany) and inserted with the
   server's driver (``executemany``, 1,000 rows a transaction), the stored values as they are:
   no types, no checksums. Once into PostgreSQL, once into MariaDB.
b. Mimir: ``copy_tables`` of the whole database, SQLite -> PostgreSQL -> MariaDB -> SQLite (one
   snapshot of each source, keyset pages, canonical rows and checksums, 1,000 rows a
   transaction), then the verification the command does (every table read back and hashed).
   Each hop is printed as rows/s and as a ratio to the baseline into the same server.

The servers are DESIGN.md's (``--postgres``/``--mysql`` give admin URLs); the benchmark makes its
own databases there and drops them. The figures are information: migration has no speed target.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Report

from mimir_tui.config import load_settings
from mimir_tui.ops import tables
from mimir_tui.persistence import open_backend
from mimir_tui.persistence.models import EXECUTIONS

BATCH = 1000


def settings_for(**persistence: Any) -> Any:
    settings = load_settings(use_search=False, environ={})
    for key, value in persistence.items():
        setattr(settings.persistence, key, value)
    return settings


def build_source(path: Path, n: int) -> Any:
    store = open_backend(settings_for(database_path=str(path)))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, n, BATCH):
        rows = []
        for i in range(start, min(n, start + BATCH)):
            begun = t0 + timedelta(seconds=30 * i, microseconds=i)
            rows.append(
                {
                    "id": f"{i:012x}{'ab' * 10}",
                    "job_id": None,
                    "pipeline": f"pipeline-{i % 20}",
                    "start_time": begun,
                    "end_time": begun + timedelta(seconds=i % 90),
                    "duration": (i % 90) * 1000,
                    "status": "success" if i % 7 else "failed",
                    "error": None if i % 7 else "step transform failed: KeyError 'title'",
                    "context": {"run": i, "feed": "https://example.org/feed.xml", "note": "naïve ✓"},
                    "steps": [
                        {
                            "step_name": f"step-{k}",
                            "plugin": ["input.rss", "transform", "output.json"][k],
                            "status": "success",
                            "start_time": (begun + timedelta(seconds=k)).isoformat(),
                            "duration": 250 * k,
                            "output": {"items": k * 10, "ratio": k / 3},
                        }
                        for k in range(3)
                    ],
                    "triggered_by": "scheduler",
                    "scheduled_for": None,
                    "attempt": 1,
                    "worker_id": "host-1:4242",
                    "cancel_requested": False,
                    "updated_at": begun,
                }
            )
        tables.insert_rows(store, EXECUTIONS, rows)
    return store


def baseline(source: Path, target: Any) -> float:
    """Seconds for the plain copy of job_executions into ``target`` (a backend, emptied after)."""
    tables.clear_tables(target)
    columns = [c.name for c in EXECUTIONS.columns]
    src = sqlite3.connect(source)
    raw = target.engine.raw_connection()
    marks = ", ".join(["%s"] * len(columns))
    quote = '"' if target.dialect == "postgresql" else "`"
    names = ", ".join(f"{quote}{c}{quote}" for c in columns)
    sql = f"INSERT INTO job_executions ({names}) VALUES ({marks})"
    flag = columns.index("cancel_requested") if target.dialect == "postgresql" else None
    started = time.perf_counter()
    try:
        cur = src.execute(f"SELECT {', '.join(columns)} FROM job_executions ORDER BY id")
        while True:
            rows = cur.fetchmany(BATCH)
            if not rows:
                break
            if flag is not None:  # SQLite keeps it as 0/1, PostgreSQL wants a boolean
                rows = [(*r[:flag], bool(r[flag]), *r[flag + 1 :]) for r in rows]
            out = raw.cursor()
            out.executemany(sql, rows)
            raw.commit()
        return time.perf_counter() - started
    finally:
        src.close()
        raw.close()
        tables.clear_tables(target)


class Servers:
    """Scratch databases on the two servers, dropped at the end."""

    def __init__(self, postgres: str, mysql: str) -> None:
        self.admin = {"postgres": postgres, "mysql": mysql}
        self.name = f"mimir_bench_migrate_{os.getpid()}"

    def _run(self, backend: str, sql: str) -> None:
        from sqlalchemy import create_engine, text

        from mimir_tui.persistence.engine import server_url

        url = server_url(settings_for(backend=backend, connection_string=self.admin[backend]).persistence)
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def open(self, backend: str) -> Any:
        quote = '"' if backend == "postgres" else "`"
        self._run(backend, f"CREATE DATABASE {quote}{self.name}{quote}")
        base, _, _ = self.admin[backend].rpartition("/")
        return open_backend(settings_for(backend=backend, connection_string=f"{base}/{self.name}"))

    def drop(self) -> None:
        for backend, quote in (("postgres", '"'), ("mysql", "`")):
            try:
                self._run(backend, f"DROP DATABASE IF EXISTS {quote}{self.name}{quote}")
            except Exception as exc:  # reported, not fatal: the figures are printed already
                print(f"could not drop {self.name} on {backend}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 executions instead of 100,000")
    parser.add_argument("--rows", type=int, default=None, help="executions in the source")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test", help="admin URL")
    parser.add_argument("--mysql", default="mysql://root@127.0.0.1:3306/test", help="admin URL")
    args = parser.parse_args(argv)
    n = args.rows or (10_000 if args.quick else 100_000)
    report = Report()
    started = time.perf_counter()
    servers = Servers(args.postgres, args.mysql)
    with tempfile.TemporaryDirectory(prefix="mimir-bench-migrate-") as tmp:
        stores = []
        try:
            t = time.perf_counter()
            source = build_source(Path(tmp) / "source.db", n)
            stores.append(source)
            report.say(f"source: {n:,} executions in SQLite, made in {time.perf_counter() - t:.1f} s")
            pg, my = servers.open("postgres"), servers.open("mysql")
            back = open_backend(settings_for(database_path=str(Path(tmp) / "back.db")))
            stores += [pg, my, back]
            base = {"postgresql": baseline(Path(tmp) / "source.db", pg), "mysql": baseline(Path(tmp) / "source.db", my)}
            for name, seconds in base.items():
                report.info(f"a. baseline sqlite3 -> {name} driver: {n / seconds:,.0f} rows/s ({seconds:.1f} s)")
            chain = [source, pg, my, back]
            expected = None
            for a, b in zip(chain, chain[1:], strict=False):
                t = time.perf_counter()
                copied = tables.copy_tables(a, b, batch=BATCH)
                copy_s = time.perf_counter() - t
                t = time.perf_counter()
                found = tables.table_summaries(b, batch=BATCH)
                verify_s = time.perf_counter() - t
                expected = expected or copied
                assert copied == expected and found == expected, f"{a.dialect} -> {b.dialect}: rows differ"
                rows = sum(s.rows for s in copied.values())
                ratio = f", {copy_s / (base[b.dialect] * rows / n):.2f}x the baseline" if b.dialect in base else ""
                report.info(
                    f"b. {a.dialect} -> {b.dialect}: {rows / copy_s:,.0f} rows/s ({copy_s:.1f} s{ratio}); "
                    f"verification {rows / verify_s:,.0f} rows/s ({verify_s:.1f} s)"
                )
            report.info("   every hop: counts and checksums equal")
        finally:
            for store in stores:
                store.close()
            servers.drop()
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
