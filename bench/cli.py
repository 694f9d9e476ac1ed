#!/usr/bin/env python3
"""How long the command line takes to answer, against starting Python and importing ``sqlite3``.

    python bench/cli.py              # 10 runs of each command (about half a minute)
    python bench/cli.py --runs 30    # more runs, steadier figures

Every command is a fresh process of this interpreter (``sys.executable``), so the baseline pays
for the same interpreter start and the same ``site`` (virtualenv, editable install) as Mimir:

* baseline: ``python -c "import sqlite3"``;
* ``mimir-tui --help``: the console script beside the interpreter (``python -m mimir_tui.cli``
  when there is none);
* ``mimir-tui jobs list``: on a fresh SQLite database in a temporary folder holding 100 jobs
  (made through the backend before the clock starts), with ``--config`` naming that folder's
  config file and no ``MIMIR_*`` variables in the environment.

Also timed, for reference only (no target): ``python -c "import sqlmodel"``, the floor of any
command that opens the database through the SQLModel backend.

One untimed run of each first (bytecode caches, written to a folder of the benchmark's own even
when ``PYTHONDONTWRITEBYTECODE`` is set; the page cache), then the commands take turns,
run by run, so that drift in the machine's load falls on all alike. The figures are wall-clock
medians and 90th percentiles; the CPU time (user + system) of the children is shown beside
them, being less sensitive to other work on the machine. Targets, on the medians: ``--help``
within 2x the baseline, ``jobs list`` within 5x. One more run of each with ``-X importtime``
lists which heavy packages it loads. Exit status: 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
from common import percentile

HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "pydantic",
    "pydantic_settings",
    "alembic",
    "yaml",
    "croniter",
    "httpx",
    "chromadb",
    "textual",
    "mimir_tui.persistence",
    "mimir_tui.pipelines",
    "mimir_tui.scheduler",
)


class Report(common.Report):
    def figure(self, name: str, mimir: float, base: float, target: float | None) -> None:
        ratio = mimir / base if base > 0 else math.inf
        if target is None:
            verdict = "(reference, no target)"
        else:
            ok = ratio <= target
            self.failed += not ok
            verdict = f"(target <= {target:g}x) {'PASS' if ok else 'MISS'}"
        self.info(f"{name}: {mimir * 1000:.0f} ms, baseline {base * 1000:.0f} ms, ratio {ratio:.2f} {verdict}")


@dataclass
class Command:
    name: str
    argv: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    expect_lines: int | None = None

    def run(self, cwd: Path, env: dict[str, str]) -> None:
        """One timed run: wall clock around the process, CPU from the children's rusage."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(self.argv, cwd=cwd, env=env, capture_output=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.check(proc)
        self.wall.append(wall)
        self.cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))

    def check(self, proc: subprocess.CompletedProcess) -> None:
        """A command that failed, or printed the wrong thing, would be measuring something else."""
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
        if self.expect_lines is not None:
            lines = len(proc.stdout.decode().splitlines())
            if lines != self.expect_lines:
                raise SystemExit(f"{self.name}: printed {lines} lines, expected {self.expect_lines}")


def cli_argv() -> list[str]:
    """``mimir-tui`` as an operator runs it: the console script installed with this interpreter."""
    script = Path(sys.executable).with_name("mimir-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mimir_tui.cli"]


def clean_env(workdir: Path) -> dict[str, str]:
    """The environment without ``MIMIR_*`` (only the config file given with ``--config`` counts),
    and with bytecode caching on, as an installed Mimir has it, even when the caller's
    environment says ``PYTHONDONTWRITEBYTECODE``: the caches go to a folder of the benchmark's
    own (``PYTHONPYCACHEPREFIX``), made by the untimed first runs, so nothing is written beside
    the sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def make_database(workdir: Path, jobs: int) -> Path:
    """A config file and a fresh SQLite database holding ``jobs`` enabled jobs, made through the
    backend (the schema and every column as Mimir writes them)."""
    from mimir_tui.config import load_settings
    from mimir_tui.persistence import open_backend
    from mimir_tui.scheduler.jobs import create_job

    config = workdir / "config.yaml"
    config.write_text("persistence:\n  backend: sqlite\n  database_path: ./mimir.db\n", encoding="utf-8")
    backend = open_backend(load_settings(str(config), environ={}))
    try:
        for i in range(jobs):
            create_job(
                backend,
                name=f"job-{i:03d}",
                pipeline=f"pipeline-{i % 10}",
                cron_expr="*/5 * * * *",
                require_pipeline=False,
            )
    finally:
        backend.close()
    return config


def heavy_imports(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """How many modules one run imports, and which of :data:`HEAVY` among them."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    names = [
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    ]
    loaded = set(names)
    heavy = [h for h in HEAVY if h in loaded]
    return len(loaded), heavy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the database of `jobs list` (default 100)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    report = Report()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report.say(
        f"Mimir command line benchmark: Python {sys.version.split()[0]} ({sys.executable}), "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, load average {load:.2f}, {args.runs} runs each"
    )

    workdir = Path(tempfile.mkdtemp(prefix="mimir-bench-cli-"))
    started = time.perf_counter()
    try:
        config = make_database(workdir, args.jobs)
        env = clean_env(workdir)
        cli = cli_argv()
        baseline = Command("baseline: python -c 'import sqlite3'", [sys.executable, "-c", "import sqlite3"])
        help_ = Command("mimir-tui --help", [*cli, "--help"])
        jobs = Command(
            f"mimir-tui jobs list ({args.jobs} jobs, SQLite)",
            [*cli, "--config", str(config), "jobs", "list"],
            expect_lines=args.jobs + 1,
        )
        floor = Command("floor: python -c 'import sqlmodel'", [sys.executable, "-c", "import sqlmodel"])
        commands = [baseline, help_, jobs, floor]
        for command in commands:  # untimed: bytecode and page caches
            command.check(subprocess.run(command.argv, cwd=workdir, env=env, capture_output=True))
        for _ in range(args.runs):
            for command in commands:
                command.run(workdir, env)

        report.say("\n== times (wall median / p90; CPU median)")
        for command in commands:
            report.say(
                f"  {command.name:48} {statistics.median(command.wall) * 1000:7.0f} / "
                f"{percentile(command.wall, 0.9) * 1000:5.0f} ms wall; "
                f"{statistics.median(command.cpu) * 1000:5.0f} ms CPU"
            )
        report.say("\n== what each loads (one run with -X importtime)")
        for command in commands[1:3]:
            count, heavy = heavy_imports(command.argv, workdir, env)
            report.say(f"  {command.name:48} {count} modules; heavy: {', '.join(heavy) or 'none'}")

        report.say("\n== ratios to the baseline (medians)")
        base_wall = statistics.median(baseline.wall)
        base_cpu = statistics.median(baseline.cpu)
        for command, target in ((help_, 2.0), (jobs, 5.0), (floor, None)):
            report.figure(f"{command.name}, wall", statistics.median(command.wall), base_wall, target)
            report.info(
                f"  {command.name}, CPU: ratio {statistics.median(command.cpu) / base_cpu:.2f}"
                if base_cpu > 0
                else f"  {command.name}, CPU: baseline too small to divide by"
            )
    finally:
        if args.keep:
            report.say(f"\nfiles kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
