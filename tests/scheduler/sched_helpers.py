"""Helpers for the scheduler tests: small pipelines, a scheduler on a fake clock, and headless
service processes driven through a config file. (A module of its own so test files can import
it; the fixtures are in conftest.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mimir_tui.persistence import JobExecutionRecord, utcnow
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.pipelines.store import save_spec
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler

#: A Monday noon, far from any DST change.
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("mimir-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mimir_tui.cli"]


def ok_spec(name: str = "ok", seconds: float = 0) -> PipelineSpec:
    return PipelineSpec(
        name=name, steps=[{"name": "wait", "plugin": "Data_Processing.delay", "config": {"seconds": seconds}}]
    )


def bad_spec(name: str = "bad") -> PipelineSpec:
    """Fails in its one step: the file it reads does not exist."""
    return PipelineSpec(
        name=name,
        steps=[{"name": "read", "plugin": "Input.file", "config": {"path": "/nonexistent/mimir/missing.csv"}}],
    )


def add_pipelines(backend: Any, *specs: PipelineSpec) -> None:
    for spec in specs or (ok_spec(), bad_spec()):
        save_spec(backend, spec)


def create_jobs(backend: Any, count: int, *, pipeline: str, cron_expr: str, now: datetime) -> list[str]:
    """``count`` jobs ``j0000``... as :func:`~mimir_tui.scheduler.jobs.create_job` makes them (the
    first is made by it), the others its copies inserted in one transaction: a thousand
    transactions of their own took 9 s of a test's 14 on MariaDB, each commit a disk flush."""
    from mimir_tui.persistence.models import JOBS, values_of
    from mimir_tui.scheduler import jobs

    first = jobs.create_job(backend, name="j0000", pipeline=pipeline, cron_expr=cron_expr, now=now, job_id="j0000")
    row = values_of(first, JOBS)
    rows = [{**row, "id": f"j{i:04d}", "name": f"j{i:04d}"} for i in range(1, count)]
    if rows:
        with backend.engine.begin() as conn:
            conn.execute(JOBS.insert(), rows)
    return ["j0000", *(r["id"] for r in rows)]


def fake_scheduler(backend: Any, settings: Any, clock: FakeClock, worker_id: str = "w1", **kw: Any) -> Scheduler:
    return Scheduler(backend, settings, clock=clock, inline=kw.pop("inline", True), worker_id=worker_id, **kw)


def saved_run(
    backend: Any,
    job: Any,
    worker_id: str | None,
    status: str = "running",
    scheduled_for: datetime | None = None,
    start_time: datetime | None = None,
) -> JobExecutionRecord:
    """An execution of ``job`` saved as ``worker_id`` left it (no runner): a fire's when
    ``scheduled_for`` is given, else a manual run's."""
    record = JobExecutionRecord(
        job_id=job.id,
        pipeline=job.pipeline,
        start_time=start_time or utcnow(),
        status=status,
        triggered_by="scheduler" if scheduled_for else "manual",
        scheduled_for=scheduled_for,
        worker_id=worker_id,
        context={},
        steps=[],
    )
    backend.save_execution(record)
    return record


def executions(backend: Any, job_id: str | None = None) -> list:
    """Every execution (of the job) an instance has claimed, oldest scheduled_for / start first
    (not the runs still waiting in the queue, which the history lists too: no worker yet)."""
    rows = [r for r in backend.list_executions(job_id, 100_000) if r.worker_id or r.status != "queued"]
    return sorted(rows, key=lambda e: (e.scheduled_for or e.start_time, e.attempt, e.start_time))


# -- service processes -----------------------------------------------------------------------


def write_config(
    root: Path,
    *,
    persistence: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    name: str = "config.yaml",
) -> Path:
    """A config file in ``root`` whose paths all lie under it."""
    data = {
        "persistence": {
            "backend": "sqlite",
            "database_path": str(root / "data" / "mimir.db"),
            "vector_db_path": str(root / "data" / "chromem.db"),
            "enable_vector_db": False,
            "backup_path": str(root / "backups"),
            **(persistence or {}),
        },
        "scheduler": {
            "poll_interval": 0.5,
            "heartbeat_interval": 1,
            "stale_after": 10,
            "shutdown_grace": 10,
            **(scheduler or {}),
        },
        "pipelines": {"directory": str(root / "pipelines"), "watch": False},
        "plugins": {"directories": [str(root / "plugins")]},
        "logging": {
            "level": "info",
            "output": "file",
            "file_path": str(root / "logs" / "mimir.log"),
            "executions_dir": str(root / "logs" / "executions"),
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def config_settings(path: Path):
    from mimir_tui.config import load_settings

    return load_settings(path, use_search=False, environ={})


class Services:
    """``mimir-tui --headless`` processes started by a test; all are stopped at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, config: Path, *, tag: str = "svc") -> subprocess.Popen:
        log = open(self.tmp_path / f"{tag}-{len(self.procs)}.out", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}
        proc = subprocess.Popen(
            [*cli_command(), "--headless", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")[-4000:]  # type: ignore[attr-defined]

    def terminate(self, proc: subprocess.Popen, timeout: float = 20) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
