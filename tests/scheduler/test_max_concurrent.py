"""A job's ``max_concurrent`` holds for every run of it, fires, retries and manual runs alike,
across instances (issue 9, item 5: retries overlapped scheduled runs and each other, 13
overlapping pairs in 25 s with ``max_concurrent: 1``). On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sched_helpers import T0, add_pipelines, executions, fake_scheduler, ok_spec, saved_run
from sqlalchemy import event

from mimir_tui.persistence import RunRequest, open_backend, utcnow
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import DatabaseClock, FakeClock
from mimir_tui.scheduler.core import Scheduler

FIRE = T0 + timedelta(minutes=1)


def _job(backend, **options):
    add_pipelines(backend, ok_spec())
    return jobs.create_job(backend, name="one-at-a-time", pipeline="ok", cron_expr="* * * * *", now=T0, **options)


def _running(backend, job):
    """A run of ``job`` in progress on another (live) instance."""
    return saved_run(backend, job, "elsewhere", scheduled_for=T0, start_time=T0)


def test_a_retry_waits_while_its_job_runs_elsewhere(backend, backend_settings):
    """The attack: a retry (or a manual run) claimed from the queue while the job's run is in
    progress ran alongside it. It waits in the queue until that run has ended, without holding
    up the other jobs' requests behind it, and is never claimed by id either meanwhile."""
    job = _job(backend)
    other = jobs.create_job(backend, name="other", pipeline="ok", cron_expr="* * * * *", now=T0)
    running = _running(backend, job)
    retry = backend.runs.enqueue(
        RunRequest(job_id=job.id, pipeline="ok", triggered_by="retry", attempt=2, priority=9, available_at=T0)
    )
    manual = jobs.run_job_now(backend, job.id)
    unrelated = jobs.run_job_now(backend, other.id)
    now = backend.database_now()
    claimer = fake_scheduler(backend, backend_settings, FakeClock(now), worker_id="claimer")
    assert backend.runs.claim_request("cli", request_id=manual.id) is None, "claimed by id: waits too"
    assert claimer.poll_queue(now) == 1, "only the other job's request"
    assert backend.get_execution(unrelated.execution_id).status == "success"
    assert {r.id for r in backend.runs.list_queue()} == {retry.id, manual.id}

    running.status, running.end_time = "failed", now
    backend.save_execution(running)
    assert claimer.poll_queue(now) == 2, "one after the other, once the job's run has ended"
    rows = [r for r in executions(backend, job.id) if r.id != running.id]
    assert sorted((r.triggered_by, r.status) for r in rows) == [("manual", "success"), ("retry", "success")]


def test_jobs_run_wait_waits_for_the_run_of_its_job_in_progress(backend, backend_settings):
    """``jobs run ID --wait`` with no service: the command runs the request itself, but not
    alongside the job's run in progress (it said "no longer exists" when it could not claim
    it); it runs it once that run has ended."""
    job = _job(backend)
    running = _running(backend, job)
    request = jobs.run_job_now(backend, job.id)
    out: list = []
    waiter = threading.Thread(
        target=lambda: out.append(jobs.wait_for_run(backend, backend_settings, request, claim_after=0, timeout=60))
    )
    waiter.start()
    waiter.join(1.5)
    assert waiter.is_alive() and [r.id for r in backend.runs.list_queue()] == [request.id]
    running.status, running.end_time = "success", utcnow()
    backend.save_execution(running)
    waiter.join(60)
    assert out and out[0].status == "success" and out[0].start_time >= running.end_time


def test_a_fire_claimed_while_a_retry_claim_of_its_job_is_under_way_waits_for_it(backend, backend_settings):
    """The race across instances: instance A has counted the job's runs (none) in its claim of
    a retry and not yet inserted it, when instance B ticks the job's fire. B's claim must wait
    for A's (SQLite), or skip the job's row A holds and try again at its next tick (a server),
    and then find no room: never both see a free slot."""
    job = _job(backend)
    backend.runs.enqueue(RunRequest(job_id=job.id, pipeline="ok", triggered_by="retry", attempt=2, available_at=T0))
    a = open_backend(backend_settings)
    b = open_backend(backend_settings)
    paused, go = threading.Event(), threading.Event()
    claimed: list = []

    def hold(conn, cursor, statement, parameters, context, executemany):
        # A has taken its request and counted the job's runs; its insert comes next.
        if statement.lstrip().upper().startswith("DELETE FROM RUN_QUEUE") and not paused.is_set():
            paused.set()
            go.wait(20)

    event.listen(a.engine, "before_cursor_execute", hold)
    try:
        thread = threading.Thread(target=lambda: claimed.append(a.runs.claim_request("A", now=FIRE)))
        thread.start()
        assert paused.wait(20)
        tick: list = []
        clock = FakeClock(FIRE)
        other = fake_scheduler(b, backend_settings, clock, worker_id="B")
        ticker = threading.Thread(target=lambda: tick.append(other.tick()))
        ticker.start()
        ticker.join(1.0)  # B waits for SQLite's write lock, or has skipped the row: let A go on
        go.set()
        thread.join(20)
        ticker.join(20)
        if b.db.dialect.skip_locked:
            assert (tick[0].claimed, tick[0].missed, tick[0].deferred) == ([], [], 1)
            clock.advance(1)
            tick[0] = other.tick()
    finally:
        go.set()
        event.remove(a.engine, "before_cursor_execute", hold)
        a.close()
        b.close()
    assert claimed and claimed[0] is not None, "A claimed its retry"
    report = tick[0]
    assert report.claimed == [] and [m.scheduled_for for m in report.missed] == [FIRE]
    rows = executions(backend, job.id)
    assert sorted((r.triggered_by, r.status) for r in rows) == [("retry", "running"), ("scheduler", "missed")]


def _overlaps(rows):
    """Pairs of executions whose [start, end] intervals intersect."""
    spans = sorted((r.start_time, r.end_time, r.id) for r in rows)
    return [(a[2], b[2]) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]


@pytest.mark.slow
def test_failing_runs_fired_every_second_and_retried_by_two_instances_never_overlap(backend, backend_settings):
    """The attack of the issue, shortened: a job with ``max_concurrent: 1`` fired every second,
    whose runs take 0.8 s and fail, retried after 0.5 s (then 1 s), served by two instances
    (each fires and claims queued runs). A retry falls due while the next fire runs; no two
    of the job's executions overlap in time."""
    spec = PipelineSpec(
        name="slow-fail",
        steps=[
            {"name": "wait", "plugin": "Data_Processing.delay", "config": {"seconds": 0.8}},
            {"name": "read", "plugin": "Input.file", "config": {"path": "/nonexistent/mimir/missing.csv"}},
        ],
    )
    add_pipelines(backend, spec)
    settings = backend_settings
    settings.scheduler.poll_interval = 0.2
    settings.scheduler.heartbeat_interval = 1
    settings.scheduler.stale_after = 10
    job = jobs.create_job(
        backend,
        name="flaky",
        pipeline="slow-fail",
        cron_expr="* * * * * *",
        max_retries=2,
        retry_backoff_seconds=0.5,
        misfire_grace_seconds=0.5,
    )
    others = [open_backend(settings) for _ in range(2)]
    # One clock for both (as on one machine): the records' times compare exactly.
    clock = DatabaseClock(others[0])
    clock.sync()
    instances = [Scheduler(b, settings, clock=clock, worker_id=f"i{n}") for n, b in enumerate(others)]
    try:
        for instance in instances:
            instance.start()
        threading.Event().wait(6)
    finally:
        for instance in instances:
            instance.stop(grace=5)
        for b in others:
            b.close()
    rows = executions(backend, job.id)
    ran = [r for r in rows if r.status != "missed"]
    assert any(r.triggered_by == "retry" for r in ran), "retries ran"
    assert any(r.status == "missed" and "still active" in (r.error or "") for r in rows), "fires met a run"
    assert {r.status for r in ran} <= {"failed", "interrupted"}
    assert _overlaps(ran) == []
    assert utcnow() >= max(r.end_time for r in ran)
