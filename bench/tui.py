#!/usr/bin/env python3
"""The dashboard on a big store against a bare Textual app, started the same way in one run.

    python bench/tui.py            # 10,000 jobs, 1,000,000 executions (loading takes a minute)
    python bench/tui.py --quick    # 10,000 jobs, 100,000 executions, a shorter idle window

A SQLite database is filled with raw inserts (:func:`store.bulk_load`: 10,000 jobs, the
executions over a year, 50 pipelines). Then each side runs in a fresh process of its own, in
headless mode (``App.run_test``) at 160x50 (the four panes as a grid):

- *bare*: a Textual app with the same four DataTables (same columns), empty;
- *mimir*: the dashboard (:class:`~mimir_tui.tui.app.MimirApp`) on that database, refresh 2 s.

Each reports the time from the process's start (imports included) to the first full paint
(every table mounted, and on the dashboard every pane holding its rows, then the frame that
shows them),
its peak RSS (VmHWM), and its CPU (every thread) over an idle window after the paint, in %
of one core. On the dashboard the window starts once Health's second read has made the SQLite
integrity check, which comes every 5 minutes and is reported apart (CPU from the paint to its
end). Targets (issue 11): paint within 1.5 s, memory under 300 MB, idle CPU under 3%.
Exit status: 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: they are part of a start

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SIZE = (160, 50)
PIPELINES = 50


def seed(path: Path, jobs: int, rows: int) -> None:
    """Mimir's schema, ``jobs`` jobs, ``rows`` executions and the pipelines they run (raw inserts)."""
    import store

    store.make_template(path)
    store.bulk_load(path, store.Data(seed=11, jobs=jobs), rows, store.Report())
    conn = store.raw_connect(path)
    config = json.dumps({"name": "p", "steps": [{"name": "extract"}, {"name": "load"}]})
    now = store.db_time(store.T0)
    conn.executemany(
        "INSERT INTO pipelines (name, config, created_at, updated_at, enabled, source_path) VALUES (?, ?, ?, ?, 1, ?)",
        [(f"pipeline-{i:02d}", config, now, now, f"pipelines/pipeline-{i:02d}.yaml") for i in range(PIPELINES)],
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# -- the two sides, each in a process of its own ---------------------------------------------


def bare_app() -> Any:
    from textual.app import App
    from textual.containers import Grid
    from textual.widgets import DataTable

    from mimir_tui.ops import overview

    columns = (overview.JOB_COLUMNS, overview.PIPELINE_COLUMNS, overview.EXECUTION_COLUMNS, overview.HEALTH_COLUMNS)

    class Bare(App):
        CSS = "Grid { grid-size: 2 2; }"

        def compose(self) -> Any:
            with Grid():
                for names in columns:
                    table: DataTable = DataTable(cursor_type="row", zebra_stripes=True)
                    table.add_columns(*names)
                    yield table

    return Bare()


def mimir_app(db: Path) -> Any:
    from mimir_tui.config import Settings
    from mimir_tui.tui.app import MimirApp

    settings = Settings.model_validate(
        {"persistence": {"database_path": str(db)}, "pipelines": {"watch": False}, "ui": {"refresh_interval": 2.0}}
    )
    return MimirApp(settings)


def painted(app: Any, full: bool) -> bool:
    from textual.widgets import DataTable

    tables = list(app.query(DataTable))
    return len(tables) == 4 and (not full or all(t.row_count for t in tables))


async def measure(kind: str, db: Path, window: float) -> dict[str, float]:
    app = bare_app() if kind == "bare" else mimir_app(db)
    async with app.run_test(size=SIZE):
        while not painted(app.screen, full=kind == "mimir"):
            await asyncio.sleep(0.005)
        await app.screen.wait_for_refresh()  # the frame that shows them
        paint = time.perf_counter() - STARTED
        check = 0.0
        if kind == "mimir":  # Health's second read makes the integrity check (then every 5 minutes)
            health: Any = app.screen.query_one("#health")
            cpu = time.process_time()
            while health.polls < 2 or health.polling:
                await asyncio.sleep(0.05)
            check = time.process_time() - cpu
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        idle = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        rows = {t.id or "": t.row_count for t in app.screen.query("DataTable")}
    # VmHWM: this process's peak (ru_maxrss would carry the parent's over exec on Linux).
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    rss = int(hwm.split()[1]) / 1024
    result = {"paint_s": paint, "rss_mib": rss, "idle_cpu_pct": idle, "check_cpu_s": check}
    return result | {"rows": rows}  # type: ignore[dict-item]


def child(kind: str, db: Path, window: float) -> None:
    print(json.dumps(asyncio.run(measure(kind, db, window))))


def run_side(kind: str, db: Path, window: float) -> dict[str, Any]:
    import common

    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--db", str(db), "--window", str(window)],
        check=True,
        capture_output=True,
        text=True,
        env=common.child_env(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("bare", "mimir"))
    parser.add_argument("--db", type=Path)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.db, args.window)
        return 0
    import common

    report = common.Report()
    jobs, rows = 10_000, 100_000 if args.quick else 1_000_000
    window = 10.0 if args.quick else args.window
    with tempfile.TemporaryDirectory(prefix="mimir-bench-tui-") as tmp:
        db = Path(tmp) / "mimir.db"
        loading = time.perf_counter()
        seed(db, jobs, rows)
        report.say(f"  seeded {jobs:,} jobs, {rows:,} executions in {time.perf_counter() - loading:.1f} s")
        warm = [sys.executable, "-c", "import mimir_tui.tui.app, mimir_tui.tui.screens.dashboard"]
        subprocess.run(warm, check=True, env=common.child_env())  # the bytecode, as an install leaves it
        bare = run_side("bare", db, window)
        mimir = run_side("mimir", db, window)
    report.say(f"  rows shown by the dashboard: {mimir['rows']}")
    report.say(
        f"  CPU from the paint to the end of the first integrity check (SQLite quick_check, then every"
        f" 5 minutes; not in the idle window): {mimir['check_cpu_s']:.2f} s"
    )
    for key, name, unit, target in (
        ("paint_s", "first full paint", "s", 1.5),
        ("rss_mib", "peak memory (RSS)", "MiB", 300 / 1.048576),
        ("idle_cpu_pct", f"idle CPU over {window:g} s, refresh 2 s", "% of a core", 3.0),
    ):
        m, b = mimir[key], bare[key]
        ratio = m / b if b else float("inf")
        figures = f"{name}: mimir {m:.2f} {unit}, bare textual {b:.2f} {unit}, ratio {ratio:.2f}"
        report.target(figures, m, target, f" {unit}")
    return report.summary(STARTED)


if __name__ == "__main__":
    sys.exit(main())
