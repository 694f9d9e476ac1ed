"""Headless service processes: three on one SQLite file and three on PostgreSQL fire every second
with no gap and no duplicate; SIGKILL mid-run then restart; SIGTERM drains."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sched_helpers import UTC, Services, add_pipelines, config_settings, ok_spec, wait_until, write_config

from mimir_tui.persistence import open_backend
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.executor import STOPPED_REASON

pytestmark = pytest.mark.slow


def registered(backend, proc) -> bool:
    return any(
        w.pid == proc.pid and w.status == "running" and w.host == socket.gethostname()
        for w in backend.workers.list_workers()
    )


class Cluster:
    """Three service processes on one database, with a few jobs firing every second."""

    def __init__(self, name: str, cfg: Path, services: Services, size: int = 3, n_jobs: int = 3) -> None:
        self.name = name
        self.cfg = cfg
        self.services = services
        self.backend = open_backend(config_settings(cfg))
        add_pipelines(self.backend, ok_spec())
        self.procs = [services.start(cfg, tag=f"{name}{i}") for i in range(size)]
        self.n_jobs = n_jobs
        self.job_ids: list[str] = []

    def wait_registered(self) -> None:
        wait_until(
            lambda: all(registered(self.backend, p) for p in self.procs),
            30,
            what=f"{self.name}: three services to register",
        )

    def add_jobs(self) -> None:
        for i in range(self.n_jobs):
            job = jobs.create_job(
                self.backend,
                name=f"every-second-{i}",
                pipeline="ok",
                cron_expr="* * * * * *",
                job_id=f"{self.name}-{i}",
            )
            self.job_ids.append(job.id)

    def stop(self) -> list[tuple[int, float]]:
        for proc in self.procs:
            proc.send_signal(15)
        results = []
        started = time.monotonic()
        for proc in self.procs:
            code = proc.wait(timeout=30)
            results.append((code, time.monotonic() - started))
        return results

    def check_window(self, start: datetime, end: datetime) -> dict:
        """Every second of [start, end] has exactly one execution per job; returns counts."""
        seconds = [start + timedelta(seconds=s) for s in range(int((end - start).total_seconds()) + 1)]
        statuses: dict[str, int] = {}
        workers: set[str] = set()
        for job_id in self.job_ids:
            rows = [r for r in self.backend.list_executions(job_id, 10_000) if r.scheduled_for]
            by_fire: dict[datetime, list] = {}
            for r in rows:
                by_fire.setdefault(r.scheduled_for, []).append(r)
            gaps = [s for s in seconds if s not in by_fire]
            assert not gaps, f"{self.name} {job_id}: no execution for {len(gaps)} fire(s): {gaps[:5]}"
            assert all(len(by_fire[s]) == 1 for s in seconds), f"{self.name} {job_id}: a fire ran twice"
            for s in seconds:
                r = by_fire[s][0]
                assert r.status in ("success", "missed"), (self.name, job_id, s, r.status, r.error)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == "success":
                    workers.add(r.worker_id)
        return {"statuses": statuses, "workers": workers}

    def close(self) -> None:
        self.backend.close()


def test_three_processes_per_database_fire_every_second_exactly_once(tmp_path, services, server_settings):
    """Three services on one SQLite file and three on PostgreSQL (side by side), three jobs each
    firing every second for 12 seconds: every second has exactly one execution per job, and the
    work is spread over more than one instance. SIGTERM: all exit 0 in time."""
    sqlite_cfg = write_config(tmp_path / "sqlite")
    pg = server_settings("postgres")
    pg_cfg = write_config(
        tmp_path / "pg", persistence={"backend": "postgres", "connection_string": pg.persistence.connection_string}
    )
    clusters = [Cluster("sqlite", sqlite_cfg, services), Cluster("postgres", pg_cfg, services)]
    try:
        for cluster in clusters:
            cluster.wait_registered()
        for cluster in clusters:
            cluster.add_jobs()
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        end = start + timedelta(seconds=11)  # 12 fires
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 2.5)
        for cluster in clusters:
            exits = cluster.stop()
            assert [code for code, _ in exits] == [0, 0, 0], [services.output(p) for p in cluster.procs]
            assert max(took for _, took in exits) < 15
        for cluster in clusters:
            result = cluster.check_window(start, end)
            print(cluster.name, result)
            assert result["statuses"].get("success", 0) >= 12 * cluster.n_jobs * 0.8, (cluster.name, result)
            assert len(result["workers"]) >= 2, f"{cluster.name}: all the work on one instance {result}"
            leftovers = [r for r in cluster.backend.list_executions(None, 10_000) if r.status in ("running", "queued")]
            assert leftovers == [], cluster.name
            assert {w.status for w in cluster.backend.workers.list_workers()} == {"stopped"}
    finally:
        for cluster in clusters:
            cluster.close()


def test_sigkill_mid_run_then_restart(tmp_path, services):
    """kill -9 while a run is going: on restart the run is interrupted at once (its pid is dead
    on this host; no waiting for stale_after), retried, nothing stays running, every finished
    execution is still there and the schedule goes on."""
    cfg = write_config(tmp_path / "site", scheduler={"stale_after": 30})
    backend = open_backend(config_settings(cfg))
    try:
        add_pipelines(backend, ok_spec(), ok_spec("slow", seconds=3))
        slow = jobs.create_job(
            backend,
            name="slow",
            pipeline="slow",
            cron_expr="* * * * * */4",
            max_retries=1,
            retry_backoff_seconds=0,
            job_id="slow",
        )
        jobs.create_job(backend, name="tick", pipeline="ok", cron_expr="* * * * * *", job_id="tick")
        first = services.start(cfg, tag="first")

        def running_slow():
            return [r for r in backend.list_executions(slow.id, 100) if r.status == "running"]

        victim = wait_until(running_slow, 30, 0.05, "a slow run")[0]
        time.sleep(1.0)  # mid-run
        finished_before = {
            r.id: r.status for r in backend.list_executions(None, 10_000) if r.status not in ("running", "queued")
        }
        assert any(r == "success" for r in finished_before.values())
        first.kill()
        first.wait(timeout=10)
        assert backend.get_execution(victim.id).status == "running", "nobody has noticed yet"

        killed_at = time.monotonic()
        second = services.start(cfg, tag="second")
        wait_until(
            lambda: backend.get_execution(victim.id).status == "interrupted",
            15,
            0.05,
            "the killed run to be interrupted",
        )
        assert time.monotonic() - killed_at < 10, "recovered at start, not after stale_after (30 s)"
        restarted = datetime.now(UTC)
        after = backend.get_execution(victim.id)
        assert "stopped heartbeating" in after.error

        def retry():
            return [r for r in backend.list_executions(slow.id, 100) if r.attempt == 2]

        retried = wait_until(retry, 15, 0.1, "the retry to run")[0]
        assert retried.triggered_by == "retry"
        wait_until(lambda: backend.get_execution(retried.id).status == "success", 15, 0.1, "the retry to succeed")
        time.sleep(1.5)
        code, took = services.terminate(second)
        assert code == 0, services.output(second)

        rows = backend.list_executions(None, 10_000)
        assert [r.id for r in rows if r.status in ("running", "queued")] == []
        now_status = {r.id: r.status for r in rows}
        assert {k: now_status.get(k) for k in finished_before} == finished_before, "finished executions are kept"
        later = [
            r
            for r in rows
            if r.job_id == "tick" and r.scheduled_for and r.scheduled_for > restarted and r.status == "success"
        ]
        assert len(later) >= 3, "the schedule continues after the restart"
        workers = {w.pid: w.status for w in backend.workers.list_workers()}
        assert workers[first.pid] == "dead" and workers[second.pid] == "stopped"
    finally:
        backend.close()


def _one_manual_run(tmp_path: Path, services: Services, *, grace: float, seconds: float, retries: int):
    cfg = write_config(tmp_path / f"site-{grace}", scheduler={"shutdown_grace": grace})
    backend = open_backend(config_settings(cfg))
    add_pipelines(backend, ok_spec("work", seconds=seconds))
    job = jobs.create_job(
        backend,
        name="work",
        pipeline="work",
        cron_expr="0 0 1 1 *",
        job_id="work",
        max_retries=retries,
        retry_backoff_seconds=0,
    )
    proc = services.start(cfg)
    wait_until(lambda: registered(backend, proc), 30, what="the service to register")
    request = jobs.run_job_now(backend, job.id)
    wait_until(
        lambda: backend.list_executions(job.id, 5) and backend.list_executions(job.id, 5)[0].status == "running",
        15,
        0.05,
        "the run to start",
    )
    return backend, proc, request


def test_sigterm_lets_a_short_run_finish(tmp_path, services):
    backend, proc, request = _one_manual_run(tmp_path, services, grace=10, seconds=2, retries=0)
    try:
        time.sleep(0.3)
        code, took = services.terminate(proc)
        assert code == 0, services.output(proc)
        assert took < 8
        record = backend.get_execution(request.execution_id)
        assert record.status == "success" and record.error is None
        assert backend.runs.list_queue() == []
    finally:
        backend.close()


def test_sigterm_interrupts_a_run_longer_than_the_grace(tmp_path, services):
    backend, proc, request = _one_manual_run(tmp_path, services, grace=1, seconds=60, retries=1)
    try:
        code, took = services.terminate(proc)
        assert code == 0, services.output(proc)
        assert took < 1 + 5, took
        record = backend.get_execution(request.execution_id)
        assert record.status == "interrupted" and record.error == STOPPED_REASON
        assert [(r.triggered_by, r.attempt) for r in backend.runs.list_queue()] == [("retry", 2)], (
            "the next instance retries it"
        )
        assert {w.status for w in backend.workers.list_workers()} == {"stopped"}
        log = (tmp_path / "site-1" / "logs" / "mimir.log").read_text()
        assert "received SIGTERM" in log and "stopped" in log
    finally:
        backend.close()


def test_queues_route_jobs_to_the_services_that_serve_them(tmp_path, services, server_settings):
    """Two services on PostgreSQL, one serving the default queue and one serving gpu: each
    every-second job, and a manual run of the gpu job, run only on the service of its queue;
    health shows each queue served by one instance."""
    import json
    import subprocess

    from sched_helpers import cli_command

    pg = server_settings("postgres")
    persistence = {"backend": "postgres", "connection_string": pg.persistence.connection_string}
    cpu_cfg = write_config(tmp_path / "cpu", persistence=persistence)
    gpu_cfg = write_config(tmp_path / "gpu", persistence=persistence, scheduler={"queues": ["gpu"]})
    backend = open_backend(config_settings(cpu_cfg))
    try:
        add_pipelines(backend, ok_spec())
        cpu_proc, gpu_proc = services.start(cpu_cfg, tag="cpu"), services.start(gpu_cfg, tag="gpu")
        wait_until(
            lambda: registered(backend, cpu_proc) and registered(backend, gpu_proc),
            30,
            what="both services to register",
        )
        workers = {w.pid: w.id for w in backend.workers.list_workers()}
        cpu_id, gpu_id = workers[cpu_proc.pid], workers[gpu_proc.pid]
        plain = jobs.create_job(backend, name="plain", pipeline="ok", cron_expr="* * * * * *", job_id="plain")
        render = jobs.create_job(
            backend, name="render", pipeline="ok", cron_expr="* * * * * *", job_id="render", queue="gpu"
        )
        manual = jobs.run_job_now(backend, render.id)
        time.sleep(5)
        health = subprocess.run(
            [*cli_command(), "health", "--json", "--config", str(cpu_cfg)], capture_output=True, text=True, timeout=60
        )
        for proc in (cpu_proc, gpu_proc):
            assert services.terminate(proc)[0] == 0, services.output(proc)
        ran = {
            job.id: {r.worker_id for r in backend.list_executions(job.id, 1000) if r.status == "success"}
            for job in (plain, render)
        }
        assert ran == {"plain": {cpu_id}, "render": {gpu_id}}, ran
        assert backend.get_execution(manual.execution_id).worker_id == gpu_id
        queues = json.loads(health.stdout)["queues"]
        assert queues == {
            # plain, and the system job mimir-retention (retention_days defaults to 30)
            "default": {"jobs": 2, "queued": 0, "instances": 1},
            "gpu": {"jobs": 1, "queued": 0, "instances": 1},
        }, queues
    finally:
        backend.close()
