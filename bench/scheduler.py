#!/usr/bin/env python3
"""The scheduler under load: Mimir's headless service against APScheduler 3, in one run.

    pip install -e '.[bench]'                  # the peer, APScheduler 3 (a bench-only dependency)
    python bench/scheduler.py                  # 100 and 1,000 jobs, 2 rounds each, 60 s idle; PostgreSQL (~7 min)
    python bench/scheduler.py --quick          # 1 round each, 10 s windows, 200 jobs on PostgreSQL (~2.5 min)
    python bench/scheduler.py --skip-pg        # without PostgreSQL; --skip-peer: without APScheduler
    python bench/scheduler.py --solo           # phases a.-c.: the service inside this process, alone (~4-5 min)
    python bench/scheduler.py --solo --quick   # 200 jobs every second for 10 s; 10 s idle (~1 min)

The job of both sides is one step that stamps the time: Mimir's pipeline ``bench-noop`` (one
``Data_Processing.delay`` step of 0 s, with its execution record, steps and log file), the
peer's a function that returns ``time.time()`` (nothing recorded). Each side runs in processes
of its own, so that CPU and memory are its own: Mimir as ``mimir-tui --headless`` (config file,
SQLite database, pipelines folder watched, service log at INFO, as in production), the peer as
bench/peer.py (``BackgroundScheduler``, ``SQLAlchemyJobStore`` on SQLite in WAL mode, cron
triggers, 4 threads, ``misfire_grace_time`` 60 s as Mimir's ``misfire_grace``). This process
arms the jobs, reads the processes' CPU (``/proc/PID/stat``: every thread, ended ones too) and
memory (``/proc/PID/status``), and counts the runs.

e. N jobs due at once (N = 100 and 1,000): every job's cron fires at the same instants (a cron
   expression pinned to them: real cron jobs, next due a year on), Mimir's rounds at T0, T0 +
   60 s..., the peer's 30 s after each (10 s with 100 jobs): the two never fire at the same
   instant, and a Mimir round still running when the peer's begins is said in the report.
   Fire lag: when the job's step began (Mimir: the step's start time in the execution record;
   the peer: the time its function stamped) minus its scheduled instant, p50/p99/max over
   every fire. CPU per fire: the process's CPU in each round, from 0.5 s before its instant
   until its last fire ended, summed, over the fires that ran (every thread, to the nanosecond).
   Beside it, the CPU from the first round's window to the last one's end, the time between the
   rounds included: there Mimir heartbeats, watches for changes and does what a burst left
   (its idle CPU has a target of its own), which with 100 jobs added 0.3-0.8 ms a fire. Then
   both idle with their N jobs
   for the idle window: idle CPU in % of one core (the live threads' schedstat, to the
   nanosecond), and memory (RSS at the end of the window; the peak, VmHWM, beside it).
f. Exactly once: three processes of each on one SQLite file, one job every second for 20 s,
   Mimir's first, then the peer's. Mimir must give one run per scheduled second; APScheduler's
   processes do not coordinate and run a fire in several of them (its runs are counted).
g. Mimir alone on PostgreSQL (``--pg-url``; a database ``mimir_bench_PID`` of its own, made
   beside it and dropped after): N jobs (1,000) due at once with 1, 2 and 3 instances; how the
   fires per CPU-second, the fires per second and the lag grow, how the instances split the
   burst, how busy the whole machine was meanwhile (the server and the instances share its
   cores), and each fire exactly once.

Targets (issue 12), in the same run: Mimir's CPU per fire within 1.5x of the peer's; fire lag
p99 not above the peer's; idle CPU under 0.1% of a core; memory with 1,000 jobs within 1.5x of
the peer's; every fire exactly once (3 processes on SQLite; 1-3 instances on PostgreSQL).

Solo (``--solo``, the service inside this process, as before the peer came):

a. Fire lag: all jobs are due at the same instants. The scheduler's own figure
   (``Scheduler.fire_lags``: seconds between ``scheduled_for`` and the claim of the fire) and the
   run start lag (the execution's ``start_time`` minus ``scheduled_for``: when the pipeline
   actually began), p50/p99 over every fire of every round. Per round (up to 10 rounds), the
   CPU this process and the whole machine used while the round was being claimed, sampled
   every 20 ms: a slow round on a machine busy with other work is noise, not the scheduler.
   Fires that find the job's previous run still queued or running (``max_concurrent`` 1) are
   recorded ``missed``, not run: with 200 jobs every second that is the run pool's capacity.
b. CPU per fire: process CPU time (every thread of the service) from just before the first round
   until the runs of the last round have finished, divided by the number of fires that ran
   (claim, run of the pipeline with its records and log file, job bookkeeping). Baseline: the
   CPU of one raw ``sqlite3`` ``BEGIN IMMEDIATE; INSERT; COMMIT`` of the same execution row on
   the same file with the same pragmas.
c. Idle CPU: the service with 1,000 enabled jobs that do not fire in the window (``0 0 1 1 *``),
   as a percentage of one core, over 60 s (the scheduler reloads every job once a minute), with
   the share of each thread. Baselines: a Python thread waking every ``poll_interval`` and
   doing nothing, and the same loop running the one query a database-driven scheduler cannot
   avoid (count and latest ``updated_at`` of the jobs table) on raw ``sqlite3``.
   Solo targets: fire lag p99 < 1 s; idle CPU < 2% of a core.

d. (always) What stopping a runaway step costs (issue 9): patterns in ``Data_Processing.transform``
   match on the ``regex`` package with a timeout and the GIL released, instead of the standard
   library's ``re``. CPU per match of a typical pattern over 1,000 short texts, against ``re``
   in the same process, and what that adds to a fire whose step filters 1,000 records.

h. (always) What a run costs the engine, in this process: one-step runs of a pipeline one after
   another through ``PipelineRunner`` (a run slot's kept loop, taking turns as on SQLite: see
   ``mimir_tui.pipelines.loops``), with an async step (the bench's ``Data_Processing.delay`` of
   0 s) and with a sync step (a plugin returning ``{}``, run in a thread of its own as every sync
   plugin's step is); then four threads doing the same at once, as the four run slots of a burst
   do. CPU and voluntary context switches per run: what a sync step adds, and what running four
   slots at once adds.

Exit status 0 when every target is met. The machine's load average is printed first and last:
figures taken while other work runs are noisy. So is the cost of making a file, which every fire
of Mimir pays once (its log) and the peer never: the CPU of making, writing and closing a small
file in the bench's folder is printed first and last too. On ext4 without a journal (as on this
project's build machines: ``/proc/fs/jbd2`` empty) it went from 15 to 650 µs a file: such a file
system does not reuse an inode freed in the last one to six minutes, and scans past each one, so
making files right after something deleted thousands (a test run, a clone removed) is slow. The
bench keeps its own files until it ends; run it a few minutes after such work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Report, child_env, percentile
from sqlalchemy import func, select

from mimir_tui.config import Settings, load_settings
from mimir_tui.logsetup import setup_logging
from mimir_tui.persistence import open_backend
from mimir_tui.persistence.models import EXECUTIONS, JOBS
from mimir_tui.persistence.types import as_utc, sqlite_datetime_text
from mimir_tui.pipelines.registry import default_registry
from mimir_tui.pipelines.store import import_path
from mimir_tui.scheduler.cron import CronSchedule
from mimir_tui.scheduler.jobs import create_job
from mimir_tui.service import Service

FIRE_LAG_P99_TARGET = 1.0  # seconds
IDLE_CPU_TARGET = 2.0  # percent of one core
NEVER = "0 0 1 1 *"  # once a year: enabled, but never due during a run of this script

PIPELINE = """\
# One step that does nothing: what is measured is the scheduler and the engine around it.
name: "bench-noop"
description: "benchmark: a single zero-second delay"
steps:
  - name: "Nothing"
    plugin: "Data_Processing.delay"
    config:
      seconds: 0
"""

CONFIG = """\
persistence:
  backend: "sqlite"
  database_path: "./data/mimir.db"
  vector_db_path: "./data/chromem.db"
  enable_vector_db: false
  retention_days: 30
scheduler:
  poll_interval: {poll}
  max_concurrency: {concurrency}
  shutdown_grace: 600
pipelines:
  directory: "./pipelines"
  watch: true
plugins:
  directories: ["./plugins"]
logging:
  level: "info"
  output: "file"
  file_path: "./logs/mimir.log"
  executions_dir: "./logs/executions"
"""


# -- reporting ------------------------------------------------------------------------------


def target(report: Report, text: str, ok: bool) -> None:
    """A target line, kept for the summary: PASS or MISS."""
    report.failed += not ok
    report.info(f"{text} {'PASS' if ok else 'MISS'}")


def below(report: Report, name: str, value: float, unit: str, limit: float) -> None:
    target(report, f"{name}: {value:.3f} {unit} (target < {limit:g} {unit})", value < limit)


def ratio(report: Report, name: str, value: float, base: float, unit: str, base_name: str) -> None:
    times = value / base if base > 0 else math.inf
    report.say(f"  {name}: {value:.6g} {unit}; {base_name} {base:.6g} {unit}; ratio {times:.1f}x")


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live Python thread, by name (Linux /proc; empty elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = thread.name.rstrip("0123456789").rstrip("-_ ") or thread.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


# -- set-up ---------------------------------------------------------------------------------


def make_home(root: Path, *, poll: float, concurrency: int) -> Settings:
    """A folder laid out like the Docker volumes: config, data, logs, pipelines, plugins."""
    for sub in ("data", "logs", "pipelines", "plugins"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "pipelines" / "bench.yaml").write_text(PIPELINE, encoding="utf-8")
    config = root / "config.yaml"
    config.write_text(CONFIG.format(poll=poll, concurrency=concurrency), encoding="utf-8")
    return load_settings(config, environ={})


def add_jobs(settings: Settings, count: int, cron: str) -> None:
    """``count`` jobs of ``bench-noop`` on ``cron``, made the way the CLI makes them."""
    backend = open_backend(settings)
    try:
        result = import_path(backend, settings.pipelines.directory, default_registry(settings))
        if not result.ok:
            raise SystemExit(f"bench pipeline did not import: {result.issues}")
        for i in range(count):
            create_job(backend, name=f"bench-{i:04d}", pipeline="bench-noop", cron_expr=cron, job_id=f"bench-{i:04d}")
    finally:
        backend.close()


def start_service(settings: Settings) -> Service:
    setup_logging(settings, console=False)
    service = Service(settings)
    service.start()
    return service


def stop_service(service: Service) -> None:
    service.stop()


def sleep_until(when: datetime) -> None:
    while True:
        left = (when - datetime.now(UTC)).total_seconds()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


# -- a. and b.: fires -----------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core (Linux /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / tick, total / tick


class Sampler(threading.Thread):
    """Every 20 ms: (wall clock, this process's CPU, the machine's busy CPU, claims so far), to
    tell the scheduler's own slowness from other work on the machine in each round."""

    def __init__(self, claims: list[float]) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.claims = claims
        self.samples: list[tuple[datetime, float, float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.samples.append((datetime.now(UTC), cpu_seconds(), machine_busy()[0], len(self.claims)))

    def at(self, when: datetime) -> tuple[datetime, float, float, int]:
        """The last sample taken at or before ``when`` (the first one if none was)."""
        chosen = self.samples[0]
        for sample in self.samples:
            if sample[0] > when:
                break
            chosen = sample
        return chosen


def round_lines(sampler: Sampler, lags: list[float], first: datetime, period: float, rounds: int) -> list[str]:
    """Per round: its claims and their lags, and how busy this process and the machine were
    while the round was being claimed."""
    lines = []
    for k in range(rounds):
        start = first + timedelta(seconds=period * k)
        end = start + timedelta(seconds=period)
        s0, s1 = sampler.at(start), sampler.at(end)
        mine = lags[s0[3] : s1[3]]
        if not mine:
            lines.append(f"    round {k + 1}: no claims")
            continue
        window = max(max(mine), 0.05)
        w1 = sampler.at(start + timedelta(seconds=window))
        wall = max((w1[0] - s0[0]).total_seconds(), 1e-3)
        lines.append(
            f"    round {k + 1}: {len(mine)} claims, lag p50 {percentile(mine, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(mine, 0.99) * 1000:.0f} ms; while claiming, this process used "
            f"{(w1[1] - s0[1]) / wall:.2f} core(s), the machine {(w1[2] - s0[2]) / wall:.2f} of {os.cpu_count()}"
        )
    return lines


@dataclass
class FireResult:
    jobs: int
    rounds: int
    fires_run: int
    missed: int
    failed_runs: int
    fire_lags: list[float]
    start_lags: list[float]
    cpu: float
    wall: float
    drain: float  # seconds from the last round's instant until its last run ended
    rounds_detail: list[str]


def phase_fires(root: Path, *, jobs: int, every_second: bool, rounds: int, poll: float, concurrency: int) -> FireResult:
    settings = make_home(root, poll=poll, concurrency=concurrency)
    cron = "* * * * * *" if every_second else "* * * * *"
    period = 1.0 if every_second else 60.0
    add_jobs(settings, jobs, cron)
    # The first round: a boundary far enough ahead for the service to be up and idle. Every
    # job's next_run is set to it (one UPDATE, not an edit: updated_at stays).
    lead = 4.0 if every_second else 8.0
    first = CronSchedule(cron).next_after(datetime.now(UTC) + timedelta(seconds=lead))
    with sqlite3.connect(settings.persistence.database_path) as conn:
        conn.execute("UPDATE scheduled_jobs SET next_run = ?", (sqlite_datetime_text(first),))
    last = first + timedelta(seconds=period * (rounds - 1))
    print(
        f"  {jobs} jobs on {cron!r}, {rounds} round(s) from {first:%H:%M:%S} to {last:%H:%M:%S} UTC; "
        f"run pool of {concurrency}",
        flush=True,
    )

    service = start_service(settings)
    scheduler = service.scheduler
    assert scheduler is not None
    sampler = Sampler(scheduler.fire_lags)
    sleep_until(first - timedelta(seconds=0.5))
    sampler.start()
    cpu0, wall0 = cpu_seconds(), time.monotonic()

    # Wait until every job's last round has been claimed (or recorded missed) ...
    deadline = last + timedelta(seconds=max(60.0, period))
    while datetime.now(UTC) < deadline:
        states = list(scheduler._jobs.values())  # noqa: SLF001 - a benchmark may look inside
        if states and min(s.next_fire for s in states) > last:
            break
        time.sleep(0.05)
    # ... then stop claiming and wait for the runs already claimed to end (the drain).
    scheduler.stop(grace=600)
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    sampler.done.set()
    sampler.join()
    service.scheduler = None  # stopped already
    stop_service(service)

    lags = list(scheduler.fire_lags)
    backend = open_backend(settings)
    fires = read_fires(backend, jobs, [first + timedelta(seconds=period * k) for k in range(rounds)])
    backend.close()
    return FireResult(
        jobs=jobs,
        rounds=rounds,
        fires_run=fires.runs,
        missed=fires.missed,
        failed_runs=fires.failed,
        fire_lags=lags,
        start_lags=fires.start_lags,
        cpu=cpu1 - cpu0,
        wall=wall1 - wall0,
        drain=(fires.last_end - last).total_seconds() if fires.last_end else math.nan,
        rounds_detail=round_lines(sampler, lags, first, period, rounds) if rounds <= 10 else [],
    )


def file_cost(folder: Path, count: int = 300) -> float:
    """CPU microseconds of making, writing and closing one small file in ``folder`` (a new folder
    inside it), as a run makes its log. The files stay: deleting them would slow the next ones
    (see the module's docstring)."""
    probe = Path(tempfile.mkdtemp(prefix="files-", dir=folder))
    start = time.process_time()
    for i in range(count):
        fd = os.open(probe / f"{i:06d}.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.write(fd, b"x" * 400)
        os.close(fd)
    return (time.process_time() - start) / count * 1e6


def raw_insert_cpu(db: Path, count: int) -> float:
    """CPU seconds of one raw sqlite3 transaction inserting one execution row (Mimir's
    columns, a real row's values, a fresh id and run key each time)."""
    columns = [c.name for c in EXECUTIONS.columns]
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.row_factory = sqlite3.Row
    template = conn.execute("SELECT * FROM job_executions WHERE status = 'success' LIMIT 1").fetchone()
    if template is None:
        raise SystemExit("no execution to copy for the baseline")
    values = dict(template)
    sql = f"INSERT INTO job_executions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    base = datetime(2000, 1, 1)
    rows = []
    for i in range(count):
        values["id"] = f"raw-{i:08d}"
        values["scheduled_for"] = (base + timedelta(seconds=i)).isoformat(" ", "microseconds")
        rows.append(tuple(values[c] for c in columns))
    start = time.process_time()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, row)
        conn.execute("COMMIT")
    spent = time.process_time() - start
    conn.close()
    return spent / count


# -- c.: idle -------------------------------------------------------------------------------


def idle_loop_cpu(seconds: float, poll: float, db: Path | None = None) -> float:
    """CPU % of one core of a thread that wakes every ``poll`` seconds (and, with ``db``, runs
    the jobs-signature query on raw sqlite3)."""
    stop = threading.Event()

    def loop() -> None:
        conn = sqlite3.connect(db) if db else None
        while not stop.wait(poll):
            if conn is not None:
                conn.execute("SELECT count(*), max(updated_at) FROM scheduled_jobs").fetchone()
        if conn is not None:
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)


def phase_idle(
    root: Path, *, jobs: int, seconds: float, settle: float, poll: float, concurrency: int
) -> tuple[float, Path]:
    settings = make_home(root, poll=poll, concurrency=concurrency)
    add_jobs(settings, jobs, NEVER)
    service = start_service(settings)
    try:
        time.sleep(settle)  # start-up done: jobs loaded, pipelines imported, first heartbeat
        held = service.scheduler._jobs if service.scheduler else {}  # noqa: SLF001
        loaded = sum(job_id.startswith("bench-") for job_id in held)  # beside the system jobs
        if loaded != jobs:
            raise SystemExit(f"the scheduler holds {loaded} jobs, not {jobs}")
        threads0 = thread_cpu()
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(), time.monotonic()
        threads1 = thread_cpu()
    finally:
        stop_service(service)
    wall = wall1 - wall0
    per_thread = {name: 100 * (threads1[name] - threads0.get(name, 0.0)) / wall for name in threads1}
    busiest = sorted(per_thread.items(), key=lambda item: -item[1])[:6]
    if busiest:
        print("  by thread: " + ", ".join(f"{name} {share:.2f}%" for name, share in busiest), flush=True)
    return 100 * (cpu1 - cpu0) / wall, Path(settings.persistence.database_path)


# -- e., f., g.: against the peer, and across instances -------------------------------------
#
# Each side runs in processes of its own: Mimir as ``mimir-tui --headless`` (what an operator
# runs), the peer as bench/peer.py (APScheduler 3 and nothing of Mimir). This process only
# arms the jobs, reads the processes' CPU and memory from /proc, and counts the runs.

PEER = Path(__file__).with_name("peer.py")
TICK = os.sysconf("SC_CLK_TCK")
CPU_PER_FIRE_RATIO = 1.5  # Mimir's CPU per fire within 1.5x of the peer's
IDLE_CPU_ABSOLUTE = 0.1  # % of a core
MEMORY_RATIO = 1.5  # RSS with 1,000 jobs within 1.5x of the peer's (issue 12, item 3)


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process, every thread, those that ended included (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU nanoseconds of each live thread of a process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return out


def proc_cpu_fine(pid: int) -> float:
    """CPU seconds of the live threads of a process, to the nanosecond (for idle windows,
    where a clock tick is a tenth of the figure)."""
    return sum(thread_cpu_ns(pid).values()) / 1e9


@dataclass
class Window:
    """A process's CPU over a window, to the nanosecond when no thread ended in it (a thread's
    CPU goes with it), else in clock ticks."""

    pid: int
    threads: dict[str, int] = field(default_factory=dict)
    ticks: float = 0.0

    def __post_init__(self) -> None:
        self.threads, self.ticks = thread_cpu_ns(self.pid), proc_cpu(self.pid)

    def spent(self) -> float:
        now = thread_cpu_ns(self.pid)
        if set(self.threads) - set(now):
            return proc_cpu(self.pid) - self.ticks
        return sum(ns - self.threads.get(tid, 0) for tid, ns in now.items()) / 1e9


def proc_memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def pinned_cron(instants: list[datetime]) -> str:
    """Mimir's cron expression (seconds last) of exactly these instants, UTC: a real cron job
    that fires at them and, the cross product of their fields aside (instants in the past, or an
    hour and more later), not again for a year."""

    def field(name: str) -> str:
        return ",".join(str(v) for v in sorted({getattr(t, name) for t in instants}))

    return f"{field('minute')} {field('hour')} {field('day')} {field('month')} * {field('second')}"


def mimir_home(root: Path, *, poll: float, concurrency: int, pg_url: str | None = None) -> tuple[Path, Settings]:
    """make_home's folder, on PostgreSQL when ``pg_url`` is given; returns (config, settings)."""
    settings = make_home(root, poll=poll, concurrency=concurrency)
    config = root / "config.yaml"
    if pg_url:
        text = config.read_text(encoding="utf-8").replace(
            'backend: "sqlite"', f'backend: "postgres"\n  connection_string: "{pg_url}"'
        )
        config.write_text(text, encoding="utf-8")
        settings = load_settings(config, environ={})
    return config, settings


def tail(path: Path) -> str:
    """The end of a process's output file, for an error line."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()[-800:]
    except OSError:
        return ""


def start_instances(config: Path, count: int, backend: Any) -> list[subprocess.Popen]:
    """``count`` headless services on ``config``, returned once each has registered. Their
    console output goes to files beside the config (a pipe nobody reads would fill and stall
    them)."""
    procs = []
    for i in range(count):
        with open(config.parent / f"console-{i}.txt", "ab") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mimir_tui.cli", "--config", str(config), "--headless"],
                    cwd=config.parent,
                    env=child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                stop_processes(procs)
                said = tail(config.parent / f"console-{i}.txt")
                raise SystemExit(f"a mimir service exited with {proc.returncode}: {said}")
        live = {w.pid for w in backend.workers.list_workers() if w.status == "running"}
        if all(p.pid in live for p in procs):
            return procs
        time.sleep(0.2)
    stop_processes(procs)
    raise SystemExit("the mimir services did not register within 120 s")


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def arm_jobs(backend: Any, instants: list[datetime], cron: str | None = None) -> None:
    """Every bench job of the store on a cron of exactly ``instants`` (or on ``cron``), due first at
    the first of them: one UPDATE, which the running services pick up at their next look."""
    now = backend.database_now()
    with backend.engine.begin() as conn:
        conn.execute(
            JOBS.update()
            .where(JOBS.c.id.like("bench-%"))  # not the system jobs (mimir-backup, mimir-retention)
            .values(cron_expr=cron or pinned_cron(instants), next_run=instants[0], updated_at=now)
        )


@dataclass
class Fires:
    """The scheduled runs of a window, read back from Mimir's store."""

    expected: int
    runs: int = 0  # executions that ran (any end but missed)
    missed: int = 0
    failed: int = 0
    duplicates: int = 0  # executions beyond the first of a (job, instant)
    absent: int = 0  # (job, instant) without any execution
    lags: list[float] = field(default_factory=list)  # step start - scheduled instant
    start_lags: list[float] = field(default_factory=list)  # the execution's start_time - scheduled instant
    last_end: datetime | None = None
    last_start: float = math.nan  # seconds after its instant that the last run began
    by_worker: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return not self.duplicates and not self.absent


def read_fires(backend: Any, jobs: int, instants: list[datetime]) -> Fires:
    """Mimir's executions of the fires at ``instants``: when their one step began (the stamp),
    how many each fire had, which instance ran them."""
    cols = EXECUTIONS.c
    query = select(
        cols.job_id, cols.status, cols.scheduled_for, cols.start_time, cols.end_time, cols.steps, cols.worker_id
    ).where(
        cols.triggered_by == "scheduler",
        cols.job_id.like("bench-%"),
        cols.scheduled_for >= instants[0],
        cols.scheduled_for <= instants[-1],
    )
    with backend.engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    wanted = set(instants)
    result = Fires(expected=jobs * len(instants))
    seen: dict[tuple[str, datetime], int] = {}
    for job_id, status, scheduled_for, start, end, steps, worker in rows:
        scheduled_for = as_utc(scheduled_for)
        if scheduled_for not in wanted:
            continue
        seen[(job_id, scheduled_for)] = seen.get((job_id, scheduled_for), 0) + 1
        if status == "missed":
            result.missed += 1
            continue
        result.runs += 1
        result.failed += status != "success"
        result.by_worker[worker] = result.by_worker.get(worker, 0) + 1
        began = as_utc(start)
        result.start_lags.append((began - scheduled_for).total_seconds())
        if end is not None:
            result.last_end = max(result.last_end or as_utc(end), as_utc(end))
        if steps and steps[0].get("start_time"):
            began = as_utc(datetime.fromisoformat(steps[0]["start_time"]))
        result.lags.append((began - scheduled_for).total_seconds())
    result.duplicates = sum(n - 1 for n in seen.values())
    result.absent = result.expected - len(seen)
    result.last_start = max(result.lags, default=math.nan)
    return result


def ended(backend: Any, instants: list[datetime]) -> int:
    """Fires at ``instants`` not yet claimed and ended (every job has one per instant)."""
    cols = EXECUTIONS.c
    query = select(func.count()).where(
        cols.triggered_by == "scheduler",
        cols.job_id.like("bench-%"),
        cols.scheduled_for >= instants[0],
        cols.scheduled_for <= instants[-1],
        cols.status.notin_(("queued", "running")),
    )
    with backend.engine.connect() as conn:
        ended = conn.execute(query).scalar_one()
    return ended


@dataclass
class Side:
    """One scheduler's figures for N jobs due at once."""

    name: str
    fires: int = 0  # fires that ran
    missed: int = 0
    lags: list[float] = field(default_factory=list)
    cpu: float = math.nan  # seconds, each round from just before its instant until its last fire ended
    span: float = math.nan  # seconds, from just before the first instant until the last fire ended
    idle: float = math.nan  # % of a core
    rss: float = math.nan  # MiB, after the idle window
    peak: float = math.nan  # MiB, VmHWM
    last_start: float = math.nan
    note: str = ""

    @property
    def cpu_per_fire(self) -> float:
        return self.cpu / self.fires if self.fires else math.inf

    def lag_text(self) -> str:
        return (
            f"p50 {percentile(self.lags, 0.5):.3f} s, p99 {percentile(self.lags, 0.99):.3f} s, "
            f"max {max(self.lags, default=math.nan):.3f} s"
        )


class Peer:
    """bench/peer.py in a process of its own."""

    def __init__(self, db: Path, threads: int = 4) -> None:
        # Its warnings (a missed fire each) to a file: a pipe nobody reads would fill and stall it.
        self.errors = db.with_name(f"{db.stem}-{time.monotonic_ns()}.stderr.txt")
        with open(self.errors, "ab") as errors:
            self.proc = subprocess.Popen(
                [sys.executable, str(PEER), "--db", str(db), "--threads", str(threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=child_env(),
            )
        self.expect("ready")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != word:
            self.proc.kill()
            raise SystemExit(f"bench/peer.py said {line!r}, not {word!r}: {tail(self.errors)}")

    def send(self, line: str, answer: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.expect(answer)

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.proc.wait(timeout=60)
                return json.loads(line)
        raise SystemExit(f"bench/peer.py ended without its runs: {tail(self.errors)}")


def check_peer_installed() -> None:
    try:
        import apscheduler  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the peer needs APScheduler 3, a bench-only dependency: pip install -e '.[bench]' "
            "(or pip install 'apscheduler>=3.11,<4'); --skip-peer runs without it"
        ) from None


def at(when: datetime) -> None:
    sleep_until(when)


def phase_peer(
    root: Path, *, jobs: int, rounds: int, period: float, offset: float, idle: float, poll: float, concurrency: int
) -> tuple[Side, Side]:
    """N jobs due at once, in both schedulers, in one run: Mimir's rounds at T0 + k*period, the
    peer's ``offset`` seconds later; then both idle (their jobs next due a year on) for ``idle``
    seconds. Returns (mimir, peer)."""
    config, settings = mimir_home(root / "mimir", poll=poll, concurrency=concurrency)
    add_jobs(settings, jobs, NEVER)
    backend = open_backend(settings)
    mimir = Side("mimir")
    peer_side = Side("apscheduler")
    procs = start_instances(config, 1, backend)
    peer = Peer(root / "peer.db")
    try:
        lead = 4.0 + jobs / 500  # the peer's adding of its jobs, Mimir's reload of its own
        t0 = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
        mine = [t0 + timedelta(seconds=period * k) for k in range(rounds)]
        theirs = [t + timedelta(seconds=offset) for t in mine]
        arm_jobs(backend, mine)
        peer.send(f"arm {jobs} {','.join(str(int(t.timestamp())) for t in theirs)}", "armed")
        if datetime.now(UTC) > theirs[0] - timedelta(seconds=1):
            raise SystemExit("bench/peer.py armed its jobs too late: the machine is too busy for this lead")
        print(
            f"  mimir's rounds from {mine[0]:%H:%M:%S}, the peer's from {theirs[0]:%H:%M:%S} UTC, "
            f"{rounds} each, {period:g} s apart",
            flush=True,
        )
        pid = procs[0].pid
        # Each side's CPU in each round, from 0.5 s before its instant until its last fire
        # ended (Mimir's read from its store, the peer's "round" or "done" line, read in a
        # thread of its own); beside it, from the first round's window to the last's end, with
        # the time between rounds (see the module's docstring).
        deadline = mine[-1] + timedelta(seconds=180)
        peer_cpu: list[float] = []

        def peer_rounds() -> None:
            for k, instant in enumerate(theirs):
                at(instant - timedelta(seconds=0.5))
                window = Window(peer.pid)
                if k == 0:
                    span = proc_cpu(peer.pid)
                peer.expect("done" if k == len(theirs) - 1 else "round")
                peer_cpu.append(window.spent())
            peer_side.span = proc_cpu(peer.pid) - span

        peer_done = threading.Thread(target=peer_rounds, name="bench-peer-rounds", daemon=True)
        peer_done.start()
        late, spent = [], []
        for k, instant in enumerate(mine):
            at(instant - timedelta(seconds=0.5))
            window = Window(pid)
            if k == 0:
                span = proc_cpu(pid)
            while ended(backend, [instant]) < jobs and datetime.now(UTC) < deadline:
                time.sleep(0.2)
            spent.append(window.spent())
            if datetime.now(UTC) > theirs[k]:
                late.append(f"round {k + 1} ended {(datetime.now(UTC) - theirs[k]).total_seconds():.1f} s")
        mimir.cpu, mimir.span = sum(spent), proc_cpu(pid) - span
        if late:
            mimir.note = f"into the peer's round: {', '.join(late)}"
        peer_done.join(timeout=max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
        peer_side.cpu = sum(peer_cpu) if len(peer_cpu) == rounds else math.nan
        time.sleep(2.0)
        fine0 = {p: proc_cpu_fine(p) for p in (pid, peer.pid)}
        wall0 = time.monotonic()
        time.sleep(idle)
        wall = time.monotonic() - wall0
        mimir.idle = 100 * (proc_cpu_fine(pid) - fine0[pid]) / wall
        peer_side.idle = 100 * (proc_cpu_fine(peer.pid) - fine0[peer.pid]) / wall
        mimir.rss, mimir.peak = proc_memory(pid)
        peer_side.rss, peer_side.peak = proc_memory(peer.pid)
    finally:
        stop_processes(procs)
        outcome = peer.stop()
    fires = read_fires(backend, jobs, mine)
    backend.close()
    mimir.fires, mimir.missed, mimir.lags, mimir.last_start = fires.runs, fires.missed, fires.lags, fires.last_start
    if not fires.exactly_once:
        mimir.note += f"; {fires.duplicates} duplicate(s), {fires.absent} fire(s) without a run"
    peer_side.fires = len(outcome["runs"])
    peer_side.missed = outcome["missed"]
    peer_side.lags = [ran - scheduled for _, scheduled, ran in outcome["runs"]]
    peer_side.last_start = max(peer_side.lags, default=math.nan)
    return mimir, peer_side


def phase_once(root: Path, *, seconds: int, poll: float, concurrency: int) -> tuple[Fires, dict[str, int]]:
    """Three processes of each, one job every second for ``seconds`` seconds, one side after the
    other (the two never fire at the same instant). Returns Mimir's fires and the peer's
    counts: runs, distinct instants run, instants of the window."""
    config, settings = mimir_home(root / "mimir", poll=poll, concurrency=concurrency)
    add_jobs(settings, 1, NEVER)
    backend = open_backend(settings)
    procs = start_instances(config, 3, backend)
    try:
        first = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        window = [first + timedelta(seconds=s) for s in range(seconds)]
        arm_jobs(backend, window, "* * * * * *")
        at(window[-1] + timedelta(seconds=3))
    finally:
        stop_processes(procs)
    fires = read_fires(backend, 1, window)
    backend.close()

    peers = [Peer(root / "peer.db") for _ in range(3)]
    outcomes = []
    try:
        start = int(time.time()) + 3
        peers[0].send(f"every {start} {start + seconds - 1}", "armed")
        for peer in peers[1:]:
            peer.send("wake", "woken")
        time.sleep(start + seconds + 2 - time.time())
    finally:
        outcomes = [peer.stop() for peer in peers]
    runs = [int(scheduled) for outcome in outcomes for _, scheduled, _ in outcome["runs"]]
    return fires, {"runs": len(runs), "instants": len(set(runs)), "window": seconds}


def pg_connect(url: str) -> Any:
    """An autocommit connection to ``url``, or one line saying why not."""
    try:
        import psycopg
    except ImportError:
        raise SystemExit("PostgreSQL needs psycopg: pip install -e '.[postgres]'; --skip-pg runs without it") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).splitlines()[0]
        raise SystemExit(f"PostgreSQL at {url} cannot be reached ({reason}); --skip-pg runs without it") from None


@contextmanager
def pg_database(url: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server of ``url`` for this run, dropped after."""
    name = f"mimir_bench_{os.getpid()}"
    admin = pg_connect(url)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@dataclass
class Scale:
    instances: int
    fires: Fires
    cpu: float  # seconds, every instance
    machine: float  # the machine's busy share of all its cores meanwhile (the server's work included)
    others: float  # CPU seconds of the rest of the machine meanwhile (the server, mostly)


def phase_postgres(
    root: Path, url: str, *, jobs: int, rounds: int, period: float, poll: float, concurrency: int
) -> list[Scale]:
    """Mimir alone on PostgreSQL: the same N jobs due at once with 1, 2 then 3 instances."""
    out = []
    with pg_database(url) as db_url:
        config, settings = mimir_home(root / "pg", poll=poll, concurrency=concurrency, pg_url=db_url)
        add_jobs(settings, jobs, NEVER)
        backend = open_backend(settings)
        try:
            for count in (1, 2, 3):
                procs = start_instances(config, count, backend)
                try:
                    t0 = (datetime.now(UTC) + timedelta(seconds=3 + jobs / 1000)).replace(microsecond=0)
                    instants = [t0 + timedelta(seconds=period * k) for k in range(rounds)]
                    arm_jobs(backend, instants)
                    at(instants[0] - timedelta(seconds=0.5))
                    cpu0 = sum(proc_cpu(p.pid) for p in procs)
                    busy0, total0 = machine_busy()
                    deadline = instants[-1] + timedelta(seconds=180)
                    while ended(backend, instants) < jobs * rounds and datetime.now(UTC) < deadline:
                        time.sleep(0.2)
                    cpu = sum(proc_cpu(p.pid) for p in procs) - cpu0
                    busy1, total1 = machine_busy()
                finally:
                    stop_processes(procs)
                fires = read_fires(backend, jobs, instants)
                machine = (busy1 - busy0) / (total1 - total0) if total1 > total0 else math.nan
                out.append(Scale(count, fires, cpu, machine, busy1 - busy0 - cpu))
                print(
                    f"  {count} instance(s): {fires.runs} runs, lag p99 {percentile(fires.lags, 0.99):.2f} s, "
                    f"CPU {cpu:.1f} s",
                    flush=True,
                )
        finally:
            backend.close()
    return out


# -- main -----------------------------------------------------------------------------------


def phase_step_guard(report: Report, texts: int = 1000, repeats: int = 200) -> None:
    """d. (see the module's docstring)"""
    import re

    from mimir_tui.pipelines.plugins import transform

    pattern = r"^item-\d+[05]$"
    words = [f"item-{i}" for i in range(texts)]
    guarded = transform._compile(pattern, False)
    plain = re.compile(pattern)

    def cpu_per_match(match: object) -> float:
        started = time.process_time()
        for _ in range(repeats):
            for word in words:
                match(word)  # type: ignore[operator]
        return (time.process_time() - started) / (repeats * texts)

    base = cpu_per_match(plain.search)
    mine = cpu_per_match(lambda word: transform._match(guarded, "search", word))
    ratio(report, "CPU per match", mine * 1e6, base * 1e6, "µs", "baseline (re.search)")
    report.say(f"  added to a fire whose step filters {texts} records: {(mine - base) * texts * 1000:.3f} ms")


def phase_engine(report: Report, workdir: Path, runs: int = 1000) -> None:
    """h. (see the module's docstring)"""
    from mimir_tui.pipelines import loops
    from mimir_tui.pipelines.registry import Plugin
    from mimir_tui.pipelines.runner import PipelineRunner
    from mimir_tui.pipelines.spec import PipelineSpec
    from mimir_tui.pipelines.store import save_spec

    class SyncNoop(Plugin):
        type, name, description = "Bench", "sync_noop", "returns {} (a sync plugin)"

        def execute(self, config: Any, ctx: Any) -> dict:
            return {}

    settings = make_home(workdir / "engine", poll=1.0, concurrency=4)
    registry = default_registry(settings)
    registry.register(SyncNoop)
    backend = open_backend(settings)
    try:
        import_path(backend, settings.pipelines.directory, registry)
        sync = PipelineSpec(name="bench-sync", steps=[{"name": "Nothing", "plugin": "Bench.sync_noop"}])
        save_spec(backend, sync)
        runner = PipelineRunner(backend, settings, registry)
        versions = {name: backend.pipelines.version(name) for name in ("bench-noop", "bench-sync")}

        def run_many(pipeline: str, count: int) -> None:
            with loops.thread_loop(turns=True):  # a run slot's, on SQLite
                for _ in range(count):
                    runner.run(pipeline, pipeline_version=versions[pipeline])

        def per_run(pipeline: str, threads: int) -> tuple[float, float]:
            run_many(pipeline, 50)  # warm: the spec parsed, the loop made
            before = resource.getrusage(resource.RUSAGE_SELF)
            workers = [threading.Thread(target=run_many, args=(pipeline, runs // threads)) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            return cpu / runs * 1000, (after.ru_nvcsw - before.ru_nvcsw) / runs

        for pipeline, step in (("bench-noop", "async step"), ("bench-sync", "sync step")):
            for threads in (1, 4):
                ms, switches = per_run(pipeline, threads)
                report.say(
                    f"  {step}, {threads} thread(s) at once: {ms:.2f} ms of CPU per run, "
                    f"{switches:.1f} voluntary context switches per run"
                )
    finally:
        backend.close()


def solo(report: Report, args: argparse.Namespace, workdir: Path, poll: float, concurrency: int) -> None:
    """a., b., c.: the service inside this process, alone (the scheduler's own figures)."""
    every_second = args.every_second or args.quick
    jobs = args.jobs or (200 if every_second else 1000)
    rounds = args.rounds or (10 if args.quick else 20 if every_second else 2)
    idle_seconds = args.idle_seconds or (10.0 if args.quick else 60.0)
    base_seconds = min(idle_seconds, 10.0)
    report.say(f"\nc. idle: {args.idle_jobs} enabled jobs on {NEVER!r}, {idle_seconds:g} s window")
    idle, idle_db = phase_idle(
        workdir / "idle", jobs=args.idle_jobs, seconds=idle_seconds, settle=3.0, poll=poll, concurrency=concurrency
    )
    wait_only = idle_loop_cpu(base_seconds, poll)
    with_query = idle_loop_cpu(base_seconds, poll, idle_db)
    ratio(report, "idle CPU, service", idle, wait_only, "% of a core", "baseline (Event.wait loop)")
    ratio(report, "idle CPU, service", idle, with_query, "% of a core", "baseline (loop + raw jobs-signature query)")
    below(report, "solo: idle CPU", idle, "% of a core", IDLE_CPU_TARGET)

    what = "every second" if every_second else "every minute"
    report.say(f"\na./b. fires: {jobs} jobs {what}, {rounds} rounds")
    result = phase_fires(
        workdir / "fires", jobs=jobs, every_second=every_second, rounds=rounds, poll=poll, concurrency=concurrency
    )
    report.say(
        f"  fires: {result.fires_run} ran, {result.missed} recorded missed, "
        f"{result.failed_runs} runs not successful; {result.jobs * result.rounds} scheduled in the rounds "
        f"(claims seen by the scheduler: {len(result.fire_lags)})"
    )
    report.say(
        f"  fire lag (claim - scheduled_for): p50 {percentile(result.fire_lags, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(result.fire_lags, 0.99) * 1000:.1f} ms, "
        f"max {max(result.fire_lags, default=math.nan) * 1000:.1f} ms"
    )
    for line in result.rounds_detail:
        report.say(line)
    report.say(
        f"  run start lag (start_time - scheduled_for): p50 {percentile(result.start_lags, 0.5):.3f} s, "
        f"p99 {percentile(result.start_lags, 0.99):.3f} s; last run of the last round ended "
        f"{result.drain:.2f} s after its instant"
    )
    per_fire = result.cpu / result.fires_run if result.fires_run else math.inf
    raw = raw_insert_cpu(workdir / "fires" / "data" / "mimir.db", 2000)
    report.say(
        f"  CPU: {result.cpu:.2f} s over {result.wall:.1f} s of wall time "
        f"({100 * result.cpu / result.wall:.1f}% of a core)"
    )
    ratio(report, "CPU per fire", per_fire * 1000, raw * 1000, "ms", "raw sqlite3 insert of the execution row")
    below(report, "solo: fire lag p99", percentile(result.fire_lags, 0.99), "s", FIRE_LAG_P99_TARGET)


def side_line(side: Side) -> str:
    spanned = side.span / side.fires * 1000 if side.fires else math.nan
    return (
        f"  {side.name}: {side.fires} fires ran, {side.missed} missed; lag {side.lag_text()}; "
        f"CPU in its rounds {side.cpu:.3f} s ({side.cpu_per_fire * 1000:.2f} ms per fire; "
        f"{spanned:.2f} with the time between rounds); idle {side.idle:.3f}% of a core; "
        f"RSS {side.rss:.0f} MiB (peak {side.peak:.0f})" + (f"  [{side.note.strip('; ')}]" if side.note else "")
    )


def against_peer(report: Report, args: argparse.Namespace, workdir: Path, poll: float, concurrency: int) -> None:
    """e. and f.: Mimir against APScheduler, N jobs due at once; three processes of each."""
    rounds = args.rounds or (1 if args.quick else 2)
    idle = args.idle_seconds or (10.0 if args.quick else 60.0)
    table: list[tuple[int, Side, Side]] = []
    for jobs in args.sizes:
        offset = args.offset or min(max(10.0, jobs * 0.03), args.period / 2)
        report.say(
            f"\ne. {jobs} jobs due at once, {rounds} round(s): Mimir (SQLite, one `mimir-tui --headless`) "
            f"against APScheduler (SQLite in WAL mode, 4 threads), {offset:g} s apart; then {idle:g} s idle"
        )
        mimir, peer = phase_peer(
            workdir / f"peer-{jobs}",
            jobs=jobs,
            rounds=rounds,
            period=args.period,
            offset=offset,
            idle=idle,
            poll=poll,
            concurrency=concurrency,
        )
        table.append((jobs, mimir, peer))
        report.say(side_line(mimir))
        report.say(side_line(peer))
        times = mimir.cpu_per_fire / peer.cpu_per_fire if peer.cpu_per_fire else math.inf
        target(
            report,
            f"N={jobs}: CPU per fire mimir {mimir.cpu_per_fire * 1000:.2f} ms, apscheduler "
            f"{peer.cpu_per_fire * 1000:.2f} ms, {times:.2f}x (target <= {CPU_PER_FIRE_RATIO:g}x)",
            times <= CPU_PER_FIRE_RATIO,
        )
        m99, p99 = percentile(mimir.lags, 0.99), percentile(peer.lags, 0.99)
        target(
            report,
            f"N={jobs}: fire lag p99 mimir {m99:.3f} s, apscheduler {p99:.3f} s (target: not above the peer's)",
            m99 <= p99,
        )
        target(
            report,
            f"N={jobs}: idle CPU mimir {mimir.idle:.3f}% of a core, apscheduler {peer.idle:.3f}% "
            f"(target < {IDLE_CPU_ABSOLUTE:g}%)",
            mimir.idle < IDLE_CPU_ABSOLUTE,
        )
        if jobs >= 1000:
            times = mimir.rss / peer.rss
            target(
                report,
                f"N={jobs}: memory (RSS after the idle window) mimir {mimir.rss:.0f} MiB, apscheduler "
                f"{peer.rss:.0f} MiB, {times:.2f}x (target <= {MEMORY_RATIO:g}x)",
                times <= MEMORY_RATIO,
            )
        target(report, f"N={jobs}: mimir ran every fire once, none missed", mimir.fires == jobs * rounds)

    once = args.once_seconds or (10 if args.quick else 20)
    report.say(f"\nf. exactly once: 3 processes of each on one SQLite file, a job every second for {once} s")
    fires, peer_counts = phase_once(workdir / "once", seconds=once, poll=poll, concurrency=concurrency)
    target(
        report,
        f"3 processes, {once} s: mimir {fires.runs} runs for {once} scheduled seconds, "
        f"{fires.runs / once:.2f} per second "
        f"({fires.duplicates} duplicates, {fires.absent} without a run); apscheduler {peer_counts['runs']} runs, "
        f"{peer_counts['runs'] / once:.2f} per second ({peer_counts['runs'] - peer_counts['instants']} duplicates, "
        f"{once - peer_counts['instants']} without a run) (target: mimir exactly one each)",
        fires.exactly_once and not fires.missed,
    )
    markdown(report, table, rounds, fires, peer_counts, once)


def markdown(
    report: Report, table: list[tuple[int, Side, Side]], rounds: int, fires: Fires, peer: dict[str, int], once: int
) -> None:
    """The comparison as README's table."""
    report.say("\n| figure | Mimir | APScheduler 3, SQLite store in WAL mode |\n|---|---|---|")
    for jobs, m, p in table:
        report.say(f"| CPU per fire, {jobs:,} jobs | {m.cpu_per_fire * 1000:.2f} ms | {p.cpu_per_fire * 1000:.2f} ms |")
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            report.say(
                f"| fire lag, {jobs:,} jobs due at once, {name} | {percentile(m.lags, q):.3f} s | "
                f"{percentile(p.lags, q):.3f} s |"
            )
        report.say(
            f"| fire lag, {jobs:,} jobs, max | {max(m.lags, default=math.nan):.3f} s | "
            f"{max(p.lags, default=math.nan):.3f} s |"
        )
        report.say(f"| idle CPU, {jobs:,} jobs | {m.idle:.3f}% of a core | {p.idle:.3f}% |")
        report.say(
            f"| memory (RSS), {jobs:,} jobs | {m.rss:.0f} MiB (peak {m.peak:.0f}) | {p.rss:.0f} MiB "
            f"(peak {p.peak:.0f}) |"
        )
    report.say(f"| exactly once, 3 processes, {once} s | {fires.runs} runs | {peer['runs']} runs |")


def scaling(report: Report, args: argparse.Namespace, workdir: Path, poll: float, concurrency: int) -> None:
    """g.: Mimir on PostgreSQL, 1 to 3 instances."""
    jobs = args.pg_jobs or (200 if args.quick else 1000)
    report.say(f"\ng. PostgreSQL: {jobs} jobs due at once, with 1, 2 then 3 `mimir-tui --headless` instances")
    scales = phase_postgres(
        workdir, args.pg_url, jobs=jobs, rounds=1, period=args.period, poll=poll, concurrency=concurrency
    )
    report.say(
        "\n| instances | fires run | exactly once | lag p50 / p99 / max | last start | CPU, every instance | "
        "fires per CPU-second | fires per second (to the last start) | runs per instance | machine busy | "
        "CPU of the rest (the server) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for scale in scales:
        f = scale.fires
        report.say(
            f"| {scale.instances} | {f.runs} | {'yes' if f.exactly_once else 'NO'} | "
            f"{percentile(f.lags, 0.5):.2f} / {percentile(f.lags, 0.99):.2f} / {max(f.lags, default=math.nan):.2f} s"
            f" | {f.last_start:.2f} s | {scale.cpu:.2f} s | {f.runs / scale.cpu if scale.cpu else math.nan:.0f} | "
            f"{f.runs / f.last_start if f.last_start > 0 else math.nan:.0f} | "
            f"{', '.join(str(n) for n in sorted(f.by_worker.values(), reverse=True))} | {100 * scale.machine:.0f}% | "
            f"{scale.others:.2f} s |"
        )
    one, three = scales[0], scales[-1]
    report.info(
        f"PostgreSQL, 1 -> 3 instances: fires per second (to the last start) "
        f"{one.fires.runs / one.fires.last_start:.0f} -> {three.fires.runs / three.fires.last_start:.0f}, "
        f"per CPU-second {one.fires.runs / one.cpu:.0f} -> {three.fires.runs / three.cpu:.0f}, "
        f"lag p99 {percentile(one.fires.lags, 0.99):.2f} -> {percentile(three.fires.lags, 0.99):.2f} s"
    )
    for scale in scales:
        f = scale.fires
        target(
            report,
            f"PostgreSQL, {scale.instances} instance(s): {f.runs} runs of {f.expected} fires, {f.duplicates} "
            f"duplicates, {f.absent} without a run, {f.missed} missed (target: each fire exactly once)",
            f.exactly_once and not f.missed,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one round, 10 s windows, 200 jobs on PostgreSQL (~2.5 min)"
    )
    parser.add_argument(
        "--solo", action="store_true", help="phases a.-c. only: the service inside this process, no peer"
    )
    parser.add_argument(
        "--sizes",
        type=lambda t: [int(n) for n in t.split(",")],
        default=[100, 1000],
        help="jobs due at once against the peer (default 100,1000)",
    )
    parser.add_argument("--period", type=float, default=60.0, help="seconds between two rounds of a side (default 60)")
    parser.add_argument(
        "--offset",
        type=float,
        default=None,
        help="seconds from Mimir's round to the peer's (default 30 ms a job, at least 10 s, at most half the period)",
    )
    parser.add_argument("--once-seconds", type=int, default=None, help="exactly-once window (default 20, quick 10)")
    parser.add_argument(
        "--pg-jobs", type=int, default=None, help="jobs due at once on PostgreSQL (default 1000, quick 200)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MIMIR_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database to connect to; the bench makes one of its own beside it and drops it after "
        "(default $MIMIR_BENCH_POSTGRES or postgres://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument("--skip-peer", action="store_true", help="leave out e. and f. (APScheduler)")
    parser.add_argument("--skip-pg", action="store_true", help="leave out g. (PostgreSQL)")
    parser.add_argument(
        "--every-second", action="store_true", help="solo: 200 jobs on `* * * * * *` instead of 1,000 on `* * * * *`"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="solo: jobs that fire (default 1000, or 200 every second)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of each side (default 2, quick 1; solo: 2 every minute, 20 every second, 10 quick)",
    )
    parser.add_argument("--idle-jobs", type=int, default=1000, help="solo: jobs of the idle phase")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="idle window (default 60: one full reload of the jobs, which the scheduler does "
        "every minute, falls in it; quick 10)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="scheduler.max_concurrency (default: the config default)"
    )
    parser.add_argument(
        "--poll", type=float, default=None, help="scheduler.poll_interval (default: the config default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if not args.solo and not args.skip_peer:
        check_peer_installed()
    if not args.solo and not args.skip_pg:
        pg_connect(args.pg_url).close()  # said now, not after the minutes of e. and f.

    defaults = Settings().scheduler
    poll = args.poll or defaults.poll_interval
    concurrency = args.concurrency or defaults.max_concurrency
    started = time.perf_counter()
    report = Report()
    load = os.getloadavg()
    report.info(
        f"bench/scheduler.py: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; poll_interval {poll:g} s, "
        f"max_concurrency {concurrency}"
    )
    report.say("\nd. step guard: patterns on regex (timeout, GIL released) vs re")
    phase_step_guard(report)
    workdir = Path(tempfile.mkdtemp(prefix="mimir-bench-sched-"))
    report.info(f"making a file in {workdir.parent}: {file_cost(workdir):.0f} µs of CPU (Mimir makes one a fire)")
    try:
        report.say("\nh. the engine: 1,000 one-step runs of each kind, in this process")
        phase_engine(report, workdir)
        if args.solo:
            solo(report, args, workdir, poll, concurrency)
        else:
            if not args.skip_peer:
                against_peer(report, args, workdir, poll, concurrency)
            if not args.skip_pg:
                scaling(report, args, workdir, poll, concurrency)
        report.info(f"making a file, at the end: {file_cost(workdir):.0f} µs of CPU")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    report.info(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
