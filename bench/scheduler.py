#!/usr/bin/env python3
"""The scheduler under load, in the headless service, on a fresh SQLite file.

    python bench/scheduler.py                  # 1,000 jobs on `* * * * *`, 2 rounds; 60 s idle (~4-5 min)
    python bench/scheduler.py --every-second   # 200 jobs on `* * * * * *`, 20 rounds
    python bench/scheduler.py --quick          # 200 jobs every second for 10 s; 10 s idle (~1 min)
    python bench/scheduler.py --rounds 3 --skip-idle --keep   # options: see --help

Each phase starts the real :class:`~mimir_tui.service.Service` (scheduler, run pool, queue
poller, heartbeat, retention thread, pipelines watcher) in a temporary folder of its own, with a
config file, a SQLite database and a pipeline ``bench-noop`` of one ``Data_Processing.delay``
step of 0 s. Logging goes to the service log file at INFO, as in production.

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

d. What stopping a runaway step costs (issue 9): patterns in ``Data_Processing.transform`` match
   on the ``regex`` package with a timeout and the GIL released, instead of the standard
   library's ``re``. CPU per match of a typical pattern over 1,000 short texts, against ``re``
   in the same process, and what that adds to a fire whose step filters 1,000 records. (The
   other part, raising in a plugin thread that outlives its step, costs nothing until a step
   is abandoned.)

Targets: fire lag p99 < 1 s; idle CPU < 2% of a core. Exit status 0 when both are met.
The machine's load average is printed first: figures taken while other work runs are noisy.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mimir_tui.config import Settings, load_settings
from mimir_tui.logsetup import setup_logging
from mimir_tui.persistence import open_backend
from mimir_tui.persistence.models import EXECUTIONS
from mimir_tui.persistence.types import sqlite_datetime_text
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


@dataclass
class Report:
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def target(self, name: str, value: float, unit: str, limit: float, note: str = "") -> None:
        ok = value < limit
        self.failed += not ok
        self.say(
            f"  {name}: {value:.3f} {unit} (target < {limit:g} {unit}) {'PASS' if ok else 'FAIL'}"
            + (f"  [{note}]" if note else "")
        )

    def ratio(self, name: str, value: float, base: float, unit: str, base_name: str) -> None:
        ratio = value / base if base > 0 else math.inf
        self.say(f"  {name}: {value:.6g} {unit}; {base_name} {base:.6g} {unit}; ratio {ratio:.1f}x")


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


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
            f"    round {k + 1}: {len(mine)} claims, lag p50 {percentile(mine, 50) * 1000:.0f} ms, "
            f"p99 {percentile(mine, 99) * 1000:.0f} ms; while claiming, this process used "
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
    with sqlite3.connect(settings.persistence.database_path) as conn:
        rows = conn.execute(
            "SELECT status, scheduled_for, start_time, end_time FROM job_executions WHERE triggered_by = 'scheduler'"
        ).fetchall()

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    start_lags: list[float] = []
    missed = failed = 0
    last_end = first
    for status, scheduled_for, start, end in rows:
        if status == "missed":
            missed += 1
            continue
        if status != "success":
            failed += 1
        start_lags.append((parse(start) - parse(scheduled_for)).total_seconds())
        if end:
            last_end = max(last_end, parse(end))
    return FireResult(
        jobs=jobs,
        rounds=rounds,
        fires_run=len(start_lags),
        missed=missed,
        failed_runs=failed,
        fire_lags=lags,
        start_lags=start_lags,
        cpu=cpu1 - cpu0,
        wall=wall1 - wall0,
        drain=(last_end - last).total_seconds(),
        rounds_detail=round_lines(sampler, lags, first, period, rounds) if rounds <= 10 else [],
    )


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
        loaded = len(service.scheduler._jobs) if service.scheduler else 0  # noqa: SLF001
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
    report.ratio("CPU per match", mine * 1e6, base * 1e6, "µs", "baseline (re.search)")
    report.say(f"  added to a fire whose step filters {texts} records: {(mine - base) * texts * 1000:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 jobs every second for ~10 s, 10 s idle window")
    parser.add_argument(
        "--every-second", action="store_true", help="200 jobs on `* * * * * *` instead of 1,000 on `* * * * *`"
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs that fire (default 1000, or 200 every second)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="fire rounds (default 2 every minute, 20 every second, 10 quick)"
    )
    parser.add_argument("--idle-jobs", type=int, default=1000)
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
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-fires", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    defaults = Settings().scheduler
    poll = args.poll or defaults.poll_interval
    concurrency = args.concurrency or defaults.max_concurrency
    every_second = args.every_second or args.quick
    jobs = args.jobs or (200 if every_second else 1000)
    rounds = args.rounds or (10 if args.quick else 20 if every_second else 2)
    idle_seconds = args.idle_seconds or (10.0 if args.quick else 60.0)
    base_seconds = min(idle_seconds, 10.0)

    report = Report()
    load = os.getloadavg()
    report.say(
        f"bench/scheduler.py: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; poll_interval {poll:g} s, "
        f"max_concurrency {concurrency}"
    )
    report.say("\nd. step guard: patterns on regex (timeout, GIL released) vs re")
    phase_step_guard(report)
    workdir = Path(tempfile.mkdtemp(prefix="mimir-bench-sched-"))
    try:
        idle_db: Path | None = None
        if not args.skip_idle:
            report.say(f"\nc. idle: {args.idle_jobs} enabled jobs on {NEVER!r}, {idle_seconds:g} s window")
            idle, idle_db = phase_idle(
                workdir / "idle",
                jobs=args.idle_jobs,
                seconds=idle_seconds,
                settle=3.0,
                poll=poll,
                concurrency=concurrency,
            )
            wait_only = idle_loop_cpu(base_seconds, poll)
            with_query = idle_loop_cpu(base_seconds, poll, idle_db)
            report.ratio("idle CPU, service", idle, wait_only, "% of a core", "baseline (Event.wait loop)")
            report.ratio(
                "idle CPU, service", idle, with_query, "% of a core", "baseline (loop + raw jobs-signature query)"
            )
            report.target("idle CPU", idle, "% of a core", IDLE_CPU_TARGET)

        if not args.skip_fires:
            what = "every second" if every_second else "every minute"
            report.say(f"\na./b. fires: {jobs} jobs {what}, {rounds} rounds")
            result = phase_fires(
                workdir / "fires",
                jobs=jobs,
                every_second=every_second,
                rounds=rounds,
                poll=poll,
                concurrency=concurrency,
            )
            expected = result.jobs * result.rounds
            report.say(
                f"  fires: {result.fires_run} ran, {result.missed} recorded missed, "
                f"{result.failed_runs} runs not successful; {expected} scheduled in the rounds "
                f"(claims seen by the scheduler: {len(result.fire_lags)})"
            )
            report.say(
                f"  fire lag (claim - scheduled_for): p50 {percentile(result.fire_lags, 50) * 1000:.1f} ms, "
                f"p99 {percentile(result.fire_lags, 99) * 1000:.1f} ms, "
                f"max {max(result.fire_lags, default=math.nan) * 1000:.1f} ms"
            )
            for line in result.rounds_detail:
                report.say(line)
            report.say(
                f"  run start lag (start_time - scheduled_for): p50 {percentile(result.start_lags, 50):.3f} s, "
                f"p99 {percentile(result.start_lags, 99):.3f} s; last run of the last round ended "
                f"{result.drain:.2f} s after its instant"
            )
            per_fire = result.cpu / result.fires_run if result.fires_run else math.inf
            raw = raw_insert_cpu(workdir / "fires" / "data" / "mimir.db", 2000)
            report.say(
                f"  CPU: {result.cpu:.2f} s over {result.wall:.1f} s of wall time "
                f"({100 * result.cpu / result.wall:.1f}% of a core)"
            )
            report.ratio("CPU per fire", per_fire * 1000, raw * 1000, "ms", "raw sqlite3 insert of the execution row")
            report.target("fire lag p99", percentile(result.fire_lags, 99), "s", FIRE_LAG_P99_TARGET)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report.say(f"\n{'all targets met' if not report.failed else f'{report.failed} target(s) missed'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
