"""Every queued/running execution has a live owner, or is recovered: runs of processes that
never registered (or died), of dead or stopped workers, and of a live instance that lost track
of them become ``interrupted`` (and are retried); a run ended by another instance is never
overwritten by its late finish, and is never retried twice."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
import yaml
from outage import sqlite_write_locked
from sched_helpers import (
    T0,
    add_pipelines,
    cli_command,
    config_settings,
    executions,
    fake_scheduler,
    ok_spec,
    saved_run,
    write_config,
)

from mimir_tui.errors import PersistenceError
from mimir_tui.persistence import JobExecutionRecord, RunRequest, Worker, open_backend, utcnow
from mimir_tui.pipelines.runner import PipelineRunner
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.workers import worker_session


def _job(backend, **options):
    add_pipelines(backend, ok_spec())
    return jobs.create_job(backend, name="j", pipeline="ok", cron_expr="0 0 1 1 *", now=T0, **options)


_row = saved_run


def _worker(backend, worker_id, status="running"):
    backend.workers.register_worker(
        Worker(id=worker_id, host="elsewhere", pid=1, version="t", started_at=utcnow(), heartbeat_at=utcnow())
    )
    if status != "running":
        backend.workers.heartbeat(worker_id, status=status, revive=True)


# -- the sweep (item 1b, 3) ----------------------------------------------------------------------


def test_runs_that_no_live_worker_owns_are_swept_and_retried(backend, backend_settings):
    job = _job(backend, max_retries=1, retry_backoff_seconds=0)
    stale = backend_settings.scheduler.stale_after
    _worker(backend, "live")
    _worker(backend, "dead", status="dead")  # a reaper marked it dead, then crashed
    _worker(backend, "stopped", status="stopped")
    no_owner = _row(backend, job, None)  # `pipelines run` of an old version, killed
    unknown = _row(backend, job, "never-registered")
    of_dead = _row(backend, job, "dead")
    of_stopped = _row(backend, job, "stopped", status="queued", scheduled_for=T0)
    of_live = _row(backend, job, "live")
    now = utcnow()
    clock = FakeClock(now)
    scheduler = fake_scheduler(backend, backend_settings, clock, worker_id="me")
    scheduler.register()

    clock.set(now + timedelta(seconds=stale - 5))
    backend.workers.heartbeat("live", now=clock.now())
    assert scheduler.beat() == [], "not yet stale"
    assert backend.executions.count_running(job.id) == 5

    clock.set(now + timedelta(seconds=stale + 5))
    backend.workers.heartbeat("live", now=clock.now())
    swept = scheduler.beat()
    assert sorted(r.id for r in swept) == sorted(r.id for r in (no_owner, unknown, of_dead, of_stopped))
    for record in (no_owner, unknown, of_dead, of_stopped):
        after = backend.get_execution(record.id)
        assert after.status == "interrupted" and "no live instance" in after.error
    assert backend.get_execution(of_live.id).status == "running", "a live worker's run is never touched"
    assert backend.executions.count_running(job.id) == 1
    assert sorted((r.triggered_by, r.attempt) for r in backend.runs.list_queue()) == [("retry", 2)] * 4
    assert scheduler.beat() == [], "swept once"


# -- interrupt_runs and conditional saves (item 4) ---------------------------------------------


def test_interrupt_runs_returns_only_the_rows_it_changed(backend):
    """The run commits success between the reaper's SELECT and its guarded UPDATE: the UPDATE
    matches nothing, and the run must not be returned (its retry would be queued)."""
    from sqlalchemy import event

    job = _job(backend)
    finishing = _row(backend, job, "w")
    other = _row(backend, job, "w")
    done: list[bool] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE JOB_EXECUTIONS") and not done:
            done.append(True)
            cursor.execute(f"UPDATE job_executions SET status = 'success' WHERE id = '{finishing.id}'")

    event.listen(backend.engine, "before_cursor_execute", before)
    try:
        interrupted = backend.executions.interrupt_runs(["w"], "interrupted: test")
    finally:
        event.remove(backend.engine, "before_cursor_execute", before)
    assert done
    assert [r.id for r in interrupted] == [other.id]
    assert backend.get_execution(finishing.id).status == "success"
    assert backend.get_execution(other.id).status == "interrupted"


def test_a_conditional_save_never_overwrites_a_finished_run(backend):
    job = _job(backend)
    record = _row(backend, job, "w")
    record.steps = [{"step_name": "a"}]
    assert backend.save_execution(record, only_unfinished=True) is True
    assert backend.get_execution(record.id).steps == [{"step_name": "a"}]
    assert [r.id for r in backend.executions.interrupt_runs(["w"], "interrupted: reaped")] == [record.id]

    record.status = "success"
    assert backend.save_execution(record, only_unfinished=True) is False
    after = backend.get_execution(record.id)
    assert (after.status, after.error) == ("interrupted", "interrupted: reaped")

    fresh = JobExecutionRecord(
        job_id=job.id, pipeline="ok", start_time=T0, status="running", triggered_by="manual", context={}, steps=[]
    )
    assert backend.save_execution(fresh, only_unfinished=True) is True, "a new row is inserted"
    assert backend.get_execution(fresh.id).status == "running"
    # The plain save stays an upsert (the scheduler records its own stopped run interrupted).
    assert backend.save_execution(record) is record
    assert backend.get_execution(record.id).status == "success"


def test_a_run_ended_by_another_instance_stops_and_keeps_that_end(sqlite_settings, caplog):
    backend = open_backend(sqlite_settings)
    try:
        spec = PipelineSpec(
            name="slow",
            steps=[{"name": f"s{i}", "plugin": "Data_Processing.delay", "config": {"seconds": 0.3}} for i in range(10)],
        )
        runner = PipelineRunner(backend, sqlite_settings)
        exec_id = "run-ended-elsewhere"

        def reaper() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if backend.get_execution(exec_id).status == "running":
                        break
                except Exception:  # noqa: BLE001 - not saved yet
                    pass
                time.sleep(0.05)
            time.sleep(0.4)
            backend.executions.interrupt_runs(["w-old"], "interrupted: the instance running it stopped heartbeating")

        thread = threading.Thread(target=reaper)
        thread.start()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="mimir.runner"):
            final = runner.run(spec, execution_id=exec_id, worker_id="w-old", triggered_by="manual")
        thread.join()
        assert time.monotonic() - started < 2.5, "the run stopped instead of running its 10 steps"
        stored = backend.get_execution(exec_id)
        assert stored.status == "interrupted" and "stopped heartbeating" in stored.error
        assert final.status == "interrupted", "the runner reports the end that is stored"
        assert f"execution {exec_id} was ended by another instance (status interrupted)" in caplog.text
    finally:
        backend.close()


def test_a_reaped_scheduler_run_that_finishes_late_is_retried_once(sqlite_settings):
    """The reaper interrupted the run and queued its retry; the run's late finish neither
    overwrites ``interrupted`` nor queues a second retry."""
    backend = open_backend(sqlite_settings)
    try:
        add_pipelines(backend, ok_spec())
        job = jobs.create_job(
            backend, name="j", pipeline="ok", cron_expr="0 0 1 1 *", now=T0, max_retries=3, retry_backoff_seconds=0
        )
        clock = FakeClock(T0)
        scheduler = fake_scheduler(backend, sqlite_settings, clock, worker_id="slowpoke")
        real = scheduler.runner.run

        def run_then_get_reaped(*args, **kwargs):
            # The first run starts, then a peer declares this instance dead and interrupts the
            # run (queueing its retry) before the run saves its end.
            if kwargs.get("attempt", 1) > 1:
                return real(*args, **kwargs)
            original = scheduler.runner._save_final

            async def late_final(record, *args, **kw):
                interrupted = backend.executions.interrupt_runs(["slowpoke"], "interrupted: reaped")
                for r in interrupted:
                    scheduler._maybe_retry(r)
                return await original(record, *args, **kw)

            scheduler.runner._save_final = late_final
            try:
                return real(*args, **kwargs)
            finally:
                del scheduler.runner._save_final

        scheduler.runner.run = run_then_get_reaped
        backend.runs.enqueue(RunRequest(job_id=job.id, pipeline="ok", available_at=T0))
        assert scheduler.poll_queue() == 2  # the run, then the reaper's retry of it
        rows = sorted(executions(backend, job.id), key=lambda r: r.attempt)
        assert [(r.status, r.attempt, r.triggered_by) for r in rows] == [
            ("interrupted", 1, "manual"),
            ("success", 2, "retry"),
        ]
        assert rows[0].error == "interrupted: reaped"
        assert backend.runs.list_queue() == [], "no second retry"
    finally:
        backend.close()


# -- a live instance's own rows (item 2) --------------------------------------------------------


def test_a_ticks_fires_of_a_job_are_claimed_together_or_not_at_all(sqlite_settings, clock):
    """Another program holds the SQLite write lock during a tick that is to claim three
    catch-up fires: the claim (one transaction, with the job's run count) fails whole, and the
    next tick claims and runs all three; none is lost, none is claimed twice."""
    sqlite_settings.persistence.busy_timeout_ms = 200
    store = open_backend(sqlite_settings)
    try:
        add_pipelines(store, ok_spec())
        job = jobs.create_job(
            store,
            name="m",
            pipeline="ok",
            cron_expr="* * * * *",
            now=clock.now(),
            misfire_policy="all",
            misfire_cap=3,
            misfire_grace_seconds=600,
        )
        scheduler = fake_scheduler(store, sqlite_settings, clock)
        clock.set(T0 + timedelta(minutes=3, seconds=30))
        with sqlite_write_locked(sqlite_settings.persistence.database_path):
            assert scheduler.tick().errors == 1
        assert executions(store, job.id) == []
        report = scheduler.tick()
        assert report.errors == 0 and len(report.claimed) == 3
        rows = executions(store, job.id)
        assert [(r.scheduled_for, r.status) for r in rows] == [
            (T0 + timedelta(minutes=m), "success") for m in (1, 2, 3)
        ]
        assert store.executions.count_running(job.id) == 0
    finally:
        store.close()


def test_beat_interrupts_own_rows_this_instance_is_not_executing(store, sqlite_settings, clock):
    job = jobs.create_job(
        store, name="m", pipeline="ok", cron_expr="* * * * *", now=clock.now(), max_retries=1, retry_backoff_seconds=0
    )
    scheduler = fake_scheduler(store, sqlite_settings, clock, worker_id="me")
    scheduler.register()
    # A fire claimed, never handed to the pool; a run whose end could not be saved.
    lost_fire = JobExecutionRecord(
        job_id=job.id,
        pipeline="ok",
        start_time=T0,
        status="queued",
        triggered_by="scheduler",
        scheduled_for=T0,
        worker_id="me",
        context={},
        steps=[],
    )
    assert store.runs.claim_fire(lost_fire)
    stuck = _row(store, job, "me")
    tracked = _row(store, job, "me")
    scheduler._cancel[tracked.id] = threading.Event()  # being executed here

    assert scheduler.beat() == [], "the first beat only notes them (a claim may be on its way to the pool)"
    lost = scheduler.beat()
    assert sorted(r.id for r in lost) == sorted([lost_fire.id, stuck.id])
    for record in (lost_fire, stuck):
        after = store.get_execution(record.id)
        assert after.status == "interrupted" and "no longer running it" in after.error
    assert store.get_execution(tracked.id).status == "running"
    assert [(r.triggered_by, r.attempt) for r in store.runs.list_queue()] == [("retry", 2)] * 2


def test_a_run_whose_end_cannot_be_saved_is_reconciled(store, sqlite_settings, clock, monkeypatch):
    """The database stays away for the whole of ``scheduler.outcome_save_window`` after the run
    ends: the row stays running (its end is not guessed), then the next beats interrupt it and
    queue its retry."""
    sqlite_settings.scheduler.outcome_save_window = 0
    job = jobs.create_job(
        store,
        name="m",
        pipeline="ok",
        cron_expr="* * * * *",
        now=clock.now(),
        max_retries=1,
        retry_backoff_seconds=0,
        misfire_grace_seconds=60,
    )
    scheduler = fake_scheduler(store, sqlite_settings, clock, worker_id="me")
    scheduler.register()
    monkeypatch.setattr("mimir_tui.scheduler.executor.time.sleep", lambda s: None)
    real_save = store.save_execution

    def save(record, **kw):
        if record.status != "running":
            raise PersistenceError("save_execution failed: database is locked")
        return real_save(record, **kw)

    monkeypatch.setattr(store, "save_execution", save)
    monkeypatch.setattr("mimir_tui.pipelines.runner.asyncio.sleep", _no_sleep)
    clock.set(T0 + timedelta(minutes=1))
    assert len(scheduler.tick().claimed) == 1
    monkeypatch.setattr(store, "save_execution", real_save)
    [row] = executions(store, job.id)
    assert row.status == "running"
    scheduler.beat()
    scheduler.beat()
    assert store.get_execution(row.id).status == "interrupted"
    assert store.executions.count_running(job.id) == 0
    assert [(r.triggered_by, r.attempt) for r in store.runs.list_queue()] == [("retry", 2)]


async def _no_sleep(seconds):
    return None


# -- processes that run pipelines register as workers (item 1a) --------------------------------


def test_worker_session_registers_heartbeats_and_stops(sqlite_settings):
    sqlite_settings.scheduler.heartbeat_interval = 0.05
    sqlite_settings.scheduler.stale_after = 1
    backend = open_backend(sqlite_settings)
    try:
        with worker_session(backend, sqlite_settings) as worker_id:
            first = {w.id: w for w in backend.workers.list_workers()}[worker_id]
            assert first.status == "running" and first.pid == os.getpid()
            time.sleep(0.3)
            later = {w.id: w for w in backend.workers.list_workers()}[worker_id]
            assert later.heartbeat_at > first.heartbeat_at
        assert {w.id: w for w in backend.workers.list_workers()}[worker_id].status == "stopped"
    finally:
        backend.close()


def _slow_pipeline(tmp_path):
    path = tmp_path / "slow.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "slow", "steps": [{"name": "wait", "plugin": "Data_Processing.delay", "config": {"seconds": 60}}]}
        )
    )
    return path


def _start_run(tmp_path):
    config = write_config(tmp_path / "svc", scheduler={"heartbeat_interval": 0.5, "stale_after": 2})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}
    proc = subprocess.Popen(
        [*cli_command(), "--config", str(config), "pipelines", "run", str(_slow_pipeline(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    settings = config_settings(config)
    backend = open_backend(settings)
    deadline = time.monotonic() + 30
    rows: list = []
    while time.monotonic() < deadline:
        rows = [r for r in backend.list_executions(None, 10) if r.status == "running"]
        if rows:
            break
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
        time.sleep(0.1)
    assert rows, "the run never started"
    return proc, backend, settings, rows[0]


@pytest.mark.slow
def test_a_killed_pipelines_run_is_recovered(tmp_path):
    proc, backend, settings, row = _start_run(tmp_path)
    try:
        assert row.worker_id, "pipelines run owns its run as a worker"
        workers = {w.id: w for w in backend.workers.list_workers()}
        assert workers[row.worker_id].status == "running" and workers[row.worker_id].pid == proc.pid
        proc.kill()
        proc.wait(timeout=10)
        scheduler = fake_scheduler(backend, settings, FakeClock(utcnow() + timedelta(seconds=5)), worker_id="svc")
        scheduler.register()
        scheduler.beat()
        after = backend.get_execution(row.id)
        assert after.status == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
        backend.close()


@pytest.mark.slow
def test_sighup_ends_pipelines_run_cleanly(tmp_path):
    proc, backend, settings, row = _start_run(tmp_path)
    try:
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=15) == 1
        after = backend.get_execution(row.id)
        assert after.status == "cancelled" and "SIGHUP" in after.error
        assert {w.id: w for w in backend.workers.list_workers()}[row.worker_id].status == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
        backend.close()


def test_fires_claimed_by_a_long_tick_are_not_reconciled_away(store, sqlite_settings, clock):
    """A tick that claims for longer than two heartbeats (after a downtime, on a slow
    database) still owns the fires it has claimed and not yet handed to the pool."""
    job = jobs.create_job(store, name="m", pipeline="ok", cron_expr="* * * * *", now=clock.now())
    scheduler = fake_scheduler(store, sqlite_settings, clock, worker_id="me")
    scheduler.register()
    pending = JobExecutionRecord(
        job_id=job.id,
        pipeline="ok",
        start_time=T0,
        status="queued",
        triggered_by="scheduler",
        scheduled_for=T0,
        worker_id="me",
        context={},
        steps=[],
    )
    assert store.runs.claim_fire(pending)
    scheduler._claimed.add(pending.id)  # what _fire does right after its claim lands

    assert scheduler.beat() == [] and scheduler.beat() == [] and scheduler.beat() == []
    assert store.get_execution(pending.id).status == "queued"
    scheduler._submit_chain(job, [pending])  # the tick ends: the hand-over
    assert pending.id not in scheduler._claimed
    assert store.get_execution(pending.id).status == "success"
