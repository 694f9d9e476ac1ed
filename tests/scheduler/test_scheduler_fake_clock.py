"""The scheduler on a fake clock: misfires and grace, retries with backoff, overlaps, disabled and
edited jobs, next_run in the database, stale-heartbeat recovery and shutdown.

Executions run inline (inside ``tick()`` / ``poll_queue()``) unless a test says otherwise, with
real pipelines through the real runner."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from sched_helpers import T0, UTC, add_pipelines, executions, fake_scheduler, ok_spec
from sqlalchemy import select, text

from mimir_tui.errors import PersistenceError
from mimir_tui.persistence import JobExecutionRecord, RunRequest, Worker, open_backend
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler
from mimir_tui.scheduler.executor import STOPPED_REASON
from mimir_tui.scheduler.misfire import MAX_MISSED_ROWS
from mimir_tui.scheduler.pool import RunPool


def every_minute(store, clock, **options):
    options.setdefault("misfire_grace_seconds", 10)
    return jobs.create_job(
        store, name="m", pipeline=options.pop("pipeline", "ok"), cron_expr="* * * * *", now=clock.now(), **options
    )


# -- misfires ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy,cap,ran",
    [
        ("skip", 10, []),
        ("once", 10, [10]),  # the latest fire alone
        ("all", 3, [8, 9, 10]),  # the latest misfire_cap fires
        ("all", 20, list(range(1, 11))),
    ],
)
def test_misfire_policy_after_downtime(store, sqlite_settings, clock, policy, cap, ran):
    job = every_minute(store, clock, misfire_policy=policy, misfire_cap=cap)
    assert store.get_job(job.id).next_run == T0 + timedelta(minutes=1)
    # The service was down from T0 until 10 min 30 s later: 10 fires came and went.
    clock.set(T0 + timedelta(minutes=10, seconds=30))
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    report = scheduler.tick()

    rows = executions(store, job.id)
    by_minute = {int((r.scheduled_for - T0).total_seconds() // 60): r for r in rows}
    assert sorted(by_minute) == list(range(1, 11)), "every fire is recorded, run or missed"
    assert [m for m, r in sorted(by_minute.items()) if r.status == "success"] == ran
    missed = [r for r in rows if r.status == "missed"]
    assert len(missed) == 10 - len(ran)
    for r in missed:
        assert f"misfire policy {policy}" in r.error and "late" in r.error
        assert r.triggered_by == "scheduler" and r.worker_id == "w1"
    assert len(report.claimed) == len(ran) and len(report.missed) == len(missed)
    stored = store.get_job(job.id)
    assert stored.next_run == T0 + timedelta(minutes=11)
    if ran:
        assert stored.last_run == T0 + timedelta(minutes=ran[-1]) and stored.last_result == "success"
    # Nothing more is due until the next minute.
    assert not scheduler.tick().claimed and len(executions(store, job.id)) == 10


@pytest.mark.parametrize("policy", ["skip", "once", "all"])
def test_a_fire_late_by_less_than_the_grace_runs_normally(store, sqlite_settings, clock, policy):
    job = every_minute(store, clock, misfire_policy=policy, misfire_grace_seconds=60)
    clock.set(T0 + timedelta(minutes=1, seconds=45))  # 45 s late, grace 60 s
    fake_scheduler(store, sqlite_settings, clock).tick()
    rows = executions(store, job.id)
    assert [(r.scheduled_for, r.status) for r in rows] == [(T0 + timedelta(minutes=1), "success")]


def test_a_fire_later_than_the_grace_is_missed_with_skip(store, sqlite_settings, clock):
    job = every_minute(store, clock, misfire_policy="skip", misfire_grace_seconds=30)
    clock.set(T0 + timedelta(minutes=1, seconds=31))
    fake_scheduler(store, sqlite_settings, clock).tick()
    assert [r.status for r in executions(store, job.id)] == ["missed"]


@pytest.mark.parametrize("policy,cap", [("once", 10), ("all", 3)])
def test_a_long_downtime_runs_the_latest_fires_and_says_what_was_missed(store, sqlite_settings, clock, policy, cap):
    """Two hours of an every-second job: more fires than are recorded one by one. The run is
    the latest fire (not one from two hours ago), and the oldest recorded row says that every
    fire before it was missed too; nothing between is lost silently."""
    job = jobs.create_job(
        store,
        name="s",
        pipeline="ok",
        cron_expr="* * * * * *",
        now=T0,
        misfire_policy=policy,
        misfire_cap=cap,
        misfire_grace_seconds=5,
    )
    now = T0 + timedelta(hours=2)
    clock.set(now)
    started = time.perf_counter()
    fake_scheduler(store, sqlite_settings, clock).tick()
    assert time.perf_counter() - started < 20
    rows = executions(store, job.id)
    ran = [r.scheduled_for for r in rows if r.status == "success"]
    expected = [now - timedelta(seconds=s) for s in range(cap - 1, -1, -1)] if policy == "all" else [now]
    assert ran == expected
    missed = [r for r in rows if r.status == "missed"]
    assert len(rows) == MAX_MISSED_ROWS + cap
    # The recorded fires are the latest ones, contiguous up to now.
    keys = [r.scheduled_for for r in rows]
    assert keys == [now - timedelta(seconds=len(keys) - 1 - i) for i in range(len(keys))]
    assert "every earlier fire since 2026-01-05T12:00:01+00:00 was missed too" in missed[0].error
    assert store.get_job(job.id).next_run == now + timedelta(seconds=1)


def test_catch_up_runs_queue_behind_each_other_instead_of_counting_as_overlaps(store, sqlite_settings, clock):
    """misfire all, max_concurrent 1, run in the pool (not inline): the catch-up runs go one
    after another; none is recorded as an overlap of its siblings."""
    job = every_minute(store, clock, misfire_policy="all", misfire_cap=3, max_concurrent=1)
    clock.set(T0 + timedelta(minutes=10, seconds=30))
    scheduler = fake_scheduler(store, sqlite_settings, clock, inline=False)
    scheduler.pool = RunPool(4)
    try:
        report = scheduler.tick()
        assert len(report.claimed) == 3
        assert scheduler.pool.wait_idle(30)
    finally:
        scheduler.pool.shutdown()
    rows = executions(store, job.id)
    runs = [r for r in rows if r.status != "missed"]
    assert [r.status for r in runs] == ["success"] * 3
    assert not any("still active" in (r.error or "") for r in rows)
    runs.sort(key=lambda r: r.start_time)
    for before, after in pairwise(runs):
        assert after.start_time >= before.end_time, "max_concurrent 1: one at a time"


# -- overlaps, disabled jobs, edits ------------------------------------------------------------


def test_an_overlapping_fire_is_recorded_missed_not_dropped(store, sqlite_settings, clock):
    job = every_minute(store, clock, max_concurrent=1, misfire_grace_seconds=60)
    busy = store.save_execution(
        JobExecutionRecord(
            job_id=job.id, pipeline="ok", status="running", triggered_by="manual", worker_id="w2", context={}, steps=[]
        )
    )
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    clock.set(T0 + timedelta(minutes=1))
    report = scheduler.tick()
    assert not report.claimed and len(report.missed) == 1
    fire = [r for r in executions(store, job.id) if r.scheduled_for]
    assert [(r.scheduled_for, r.status) for r in fire] == [(T0 + timedelta(minutes=1), "missed")]
    assert "1 run(s) of this job still active (max_concurrent 1)" in fire[0].error
    # The long run ends; the next fire runs.
    busy.status = "success"
    store.save_execution(busy)
    clock.set(T0 + timedelta(minutes=2))
    assert len(scheduler.tick().claimed) == 1
    assert executions(store, job.id)[-1].status == "success"


def test_max_concurrent_two_allows_a_second_run(store, sqlite_settings, clock):
    job = every_minute(store, clock, max_concurrent=2, misfire_grace_seconds=60)
    store.save_execution(
        JobExecutionRecord(
            job_id=job.id, pipeline="ok", status="running", triggered_by="manual", worker_id="w2", context={}, steps=[]
        )
    )
    clock.set(T0 + timedelta(minutes=1))
    assert len(fake_scheduler(store, sqlite_settings, clock).tick().claimed) == 1


def test_disabled_jobs_never_fire(store, sqlite_settings, clock):
    off = every_minute(store, clock, enabled=False)
    on = every_minute(store, clock)
    assert store.get_job(off.id).next_run is None
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    for minute in range(1, 4):
        clock.set(T0 + timedelta(minutes=minute))
        scheduler.tick()
    jobs.disable_job(store, on.id)
    for minute in range(4, 8):
        clock.set(T0 + timedelta(minutes=minute))
        scheduler.tick()
    assert executions(store, off.id) == []
    assert [r.scheduled_for for r in executions(store, on.id)] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert store.get_job(on.id).next_run is None


def test_edits_by_anyone_are_picked_up_through_the_signature(store, sqlite_settings, clock):
    job = every_minute(store, clock)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    assert scheduler.refresh_jobs() is True
    assert scheduler.refresh_jobs() is False, "nothing changed: no reload"
    signature = store.jobs.signature()
    store.jobs.set_schedule(job.id, next_run=T0 + timedelta(minutes=1), last_run=T0, last_result="success")
    assert store.jobs.signature() == signature, "the scheduler's own bookkeeping is not an edit"

    # Another process (the CLI) edits the schedule: the next tick sees it.
    jobs.update_job(store, job.id, cron_expr="*/5 * * * *", now=clock.now())
    clock.set(T0 + timedelta(minutes=1))
    scheduler.tick()
    assert scheduler._jobs[job.id].next_fire == T0 + timedelta(minutes=5)
    assert executions(store, job.id) == []
    # A new job, and a deletion.
    other = jobs.create_job(store, name="o", pipeline="ok", cron_expr="*/2 * * * *", now=clock.now())
    scheduler.tick()
    assert set(scheduler._jobs) == {job.id, other.id}
    jobs.delete_job(store, sqlite_settings, other.id)
    scheduler.tick()
    assert set(scheduler._jobs) == {job.id}
    # An edit that leaves the schedule alone keeps the planned fire, with the new settings.
    jobs.update_job(store, job.id, max_retries=3)
    scheduler.tick()
    assert scheduler._jobs[job.id].next_fire == T0 + timedelta(minutes=5)
    assert scheduler._jobs[job.id].job.max_retries == 3


def test_next_run_is_stored_in_utc_and_follows_enable_and_disable(backend, clock):
    add_pipelines(backend, ok_spec())
    # 07:00 in New York at T0; the job runs at 09:00 local = 14:00 UTC (EST, UTC-5).
    job = jobs.create_job(
        backend, name="ny", pipeline="ok", cron_expr="0 9 * * *", timezone="America/New_York", now=clock.now()
    )
    stored = backend.get_job(job.id)
    assert stored.next_run == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    assert stored.next_run.utcoffset() == timedelta(0)
    with backend.engine.connect() as conn:  # the column holds UTC wall time, whatever the server's zone
        raw = conn.execute(text("SELECT next_run FROM scheduled_jobs WHERE id = :id"), {"id": job.id}).scalar()
    raw = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
    assert raw.replace(tzinfo=None) == datetime(2026, 1, 5, 14, 0)

    assert jobs.disable_job(backend, job.id).next_run is None
    assert backend.get_job(job.id).next_run is None
    # The scheduler's bookkeeping, racing with the disable, does not bring next_run back.
    backend.jobs.set_schedule(job.id, next_run=datetime(2026, 1, 5, 14, 0, tzinfo=UTC), last_result="success")
    assert backend.get_job(job.id).next_run is None
    assert backend.get_job(job.id).last_result == "success"

    later = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)  # summer: EDT, UTC-4
    jobs.enable_job(backend, job.id, now=later)
    assert backend.get_job(job.id).next_run == datetime(2026, 7, 2, 13, 0, tzinfo=UTC)
    jobs.update_job(backend, job.id, timezone="Europe/Berlin", now=later)
    assert backend.get_job(job.id).next_run == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)


def test_the_next_run_stored_when_a_job_is_added_is_its_first_fire_not_a_miss(store, sqlite_settings, clock):
    """A job's next_run is stored when it is added, before any instance runs. An instance that
    starts later takes it as the first fire: on time (within the grace) it runs, and no fire
    from before the job existed is recorded missed, whether the instance started before the
    job was added or after."""
    before = fake_scheduler(store, sqlite_settings, clock, worker_id="before")
    before.tick()  # running, with no job yet
    clock.set(T0 + timedelta(seconds=20))
    job = every_minute(store, clock, misfire_policy="all", misfire_cap=100)
    assert store.get_job(job.id).next_run == T0 + timedelta(minutes=1)
    clock.set(T0 + timedelta(seconds=50))
    assert not before.tick().claimed, "not due yet"
    after = fake_scheduler(store, sqlite_settings, clock, worker_id="after")  # started once it existed
    clock.set(T0 + timedelta(minutes=1, seconds=5))  # 5 s late, grace 10 s
    reports = [before.tick(), after.tick()]
    assert [(r.scheduled_for, r.status) for r in executions(store, job.id)] == [(T0 + timedelta(minutes=1), "success")]
    assert sum(len(r.missed) for r in reports) == 0
    assert store.get_job(job.id).next_run == T0 + timedelta(minutes=2)


def test_a_job_enabled_again_between_two_reloads_has_no_misses_for_its_disabled_time(store, sqlite_settings, clock):
    """The attack: disabled and enabled again while a scheduler had not reloaded its jobs (a
    long tick, a stall), the job kept the scheduler's planned fire from before the disable, so
    every fire of its disabled half hour was recorded missed and one of them ran. Enabling
    stores the next fire after now, and the scheduler takes that."""
    job = every_minute(store, clock)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    clock.set(T0 + timedelta(minutes=1))
    scheduler.tick()
    jobs.disable_job(store, job.id)
    clock.set(T0 + timedelta(minutes=30, seconds=5))
    jobs.enable_job(store, job.id, now=clock.now())
    report = scheduler.tick()
    assert (report.missed, report.claimed) == ([], [])
    assert [r.scheduled_for for r in executions(store, job.id)] == [T0 + timedelta(minutes=1)]
    clock.set(T0 + timedelta(minutes=31))
    assert [r.scheduled_for for r in scheduler.tick().claimed] == [T0 + timedelta(minutes=31)]


def test_one_job_failing_to_fire_does_not_hold_up_the_others(store, sqlite_settings, clock, monkeypatch):
    broken = every_minute(store, clock, misfire_grace_seconds=60)
    fine = every_minute(store, clock, misfire_grace_seconds=60)
    real = store.runs.claim_fires_within
    real_batch = store.runs.claim_batch

    def flaky(records):
        if records[0].job_id == broken.id:
            raise PersistenceError("claim_fires_within failed: database is locked")
        return real(records)

    def flaky_batch(fires, overlap):
        if broken.id in fires:  # the tick's one transaction fails: each job is fired on its own
            raise PersistenceError("claim_batch failed: database is locked")
        return real_batch(fires, overlap)

    monkeypatch.setattr(store.runs, "claim_fires_within", flaky)
    monkeypatch.setattr(store.runs, "claim_batch", flaky_batch)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    clock.set(T0 + timedelta(minutes=1))
    scheduler.tick()
    assert [r.status for r in executions(store, fine.id)] == ["success"]
    assert executions(store, broken.id) == []
    monkeypatch.setattr(store.runs, "claim_fires_within", real)
    clock.advance(5)
    scheduler.tick()  # the failed fire is tried again, still within its grace
    assert [(r.scheduled_for, r.status) for r in executions(store, broken.id)] == [
        (T0 + timedelta(minutes=1), "success")
    ]


# -- retries ----------------------------------------------------------------------------------


def test_a_failing_run_is_retried_with_exponential_backoff_then_stops(store, sqlite_settings, clock):
    job = jobs.create_job(
        store, name="r", pipeline="bad", cron_expr="0 * * * *", now=clock.now(), max_retries=2, retry_backoff_seconds=10
    )
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    fire = T0 + timedelta(hours=1)
    clock.set(fire)
    scheduler.tick()

    def queue():
        return [(r.triggered_by, r.attempt, r.available_at, r.scheduled_for) for r in store.runs.list_queue()]

    assert queue() == [("retry", 2, fire + timedelta(seconds=10), fire)]
    assert scheduler.poll_queue() == 0, "not before its time"
    clock.advance(10)
    assert scheduler.poll_queue() == 1
    assert queue() == [("retry", 3, fire + timedelta(seconds=30), fire)]  # backoff doubled: 20 s
    clock.advance(19)
    assert scheduler.poll_queue() == 0
    clock.advance(1)
    assert scheduler.poll_queue() == 1
    assert queue() == [], "max_retries 2: three attempts in all"
    rows = executions(store, job.id)
    assert [(r.attempt, r.triggered_by, r.status) for r in rows] == [
        (1, "scheduler", "failed"),
        (2, "retry", "failed"),
        (3, "retry", "failed"),
    ]
    assert all(r.worker_id == "w1" for r in rows)
    assert store.get_job(job.id).last_result == "failed"


def test_no_retry_without_max_retries_nor_after_success(store, sqlite_settings, clock):
    failing = jobs.create_job(store, name="f", pipeline="bad", cron_expr="0 * * * *", now=clock.now())
    passing = jobs.create_job(store, name="p", pipeline="ok", cron_expr="0 * * * *", now=clock.now(), max_retries=3)
    clock.set(T0 + timedelta(hours=1))
    fake_scheduler(store, sqlite_settings, clock).tick()
    assert store.runs.list_queue() == []
    assert [r.status for r in executions(store, failing.id)] == ["failed"]
    assert [r.status for r in executions(store, passing.id)] == ["success"]


# -- the queue (manual runs) --------------------------------------------------------------------


def test_manual_runs_are_claimed_by_priority(store, sqlite_settings, clock):
    job = every_minute(store, clock, enabled=False)
    low = jobs.run_job_now(store, job.id, priority=0)
    high = jobs.run_job_now(store, job.id, priority=9)
    clock.set(datetime.now(UTC) + timedelta(seconds=1))  # requests are made available at once, in real time
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    finished = []
    scheduler.on_finished = finished.append
    assert scheduler.poll_queue() == 2
    assert [r.id for r in finished] == [high.execution_id, low.execution_id]
    assert all(r.status == "success" and r.triggered_by == "manual" for r in finished)
    assert store.get_job(job.id).next_run is None, "a manual run of a disabled job leaves next_run empty"


# -- workers, heartbeats, recovery --------------------------------------------------------------


def _running_execution(backend, job, worker_id: str, now: datetime) -> JobExecutionRecord:
    request = backend.runs.enqueue(RunRequest(job_id=job.id, pipeline=job.pipeline, available_at=now))
    got = backend.runs.claim_request(worker_id, now=now, request_id=request.id)
    assert got is not None
    return got[1]


def test_a_stale_worker_runs_become_interrupted_and_are_retried(backend, backend_settings, clock):
    add_pipelines(backend, ok_spec())
    job = jobs.create_job(
        backend,
        name="j",
        pipeline="ok",
        cron_expr="0 0 1 1 *",
        now=clock.now(),
        max_retries=1,
        retry_backoff_seconds=5,
        max_concurrent=2,
    )
    a = fake_scheduler(backend, backend_settings, clock, worker_id="A")
    b = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="B")
    a.register()
    b.register()
    run_a = _running_execution(backend, job, "A", T0)
    a._cancel[run_a.id] = threading.Event()  # A is executing it (else A's beat reconciles it)
    run_b = _running_execution(backend, job, "B", T0)
    stale_after = backend_settings.scheduler.stale_after  # 30 s

    clock.set(T0 + timedelta(seconds=20))
    b.clock.set(clock.now())
    b.beat()  # B's last heartbeat: T0 + 20 s
    clock.set(T0 + timedelta(seconds=20 + stale_after - 1))
    assert a.beat() == [], "B is late, not yet stale"
    assert backend.get_execution(run_b.id).status == "running"

    clock.set(T0 + timedelta(seconds=20 + stale_after + 1))
    interrupted = a.beat()
    assert [r.id for r in interrupted] == [run_b.id]
    after = backend.get_execution(run_b.id)
    assert after.status == "interrupted" and "stopped heartbeating" in after.error
    assert backend.get_execution(run_a.id).status == "running", "a live worker's runs are never touched"
    workers = {w.id: w.status for w in backend.workers.list_workers()}
    assert workers == {"A": "running", "B": "dead"}
    retry = backend.runs.list_queue()
    assert [(r.triggered_by, r.attempt, r.requested_by) for r in retry] == [("retry", 2, f"retry of {run_b.id}")]
    assert retry[0].available_at == clock.now() + timedelta(seconds=5)

    # B was only stalled: its next heartbeat brings it back (its run stays interrupted).
    b.clock.set(clock.now())
    b.beat()
    assert {w.id: w.status for w in backend.workers.list_workers()}["B"] == "running"
    assert backend.get_execution(run_b.id).status == "interrupted"


def test_a_worker_that_heartbeats_just_before_the_reap_keeps_its_runs(backend, backend_settings, clock):
    """The compare-and-set race: the reaper read B's heartbeat as stale, then B heartbeats,
    then the reaper marks B dead. On PostgreSQL and MariaDB the mark re-checks the heartbeat
    and does nothing; SQLite serialises the two (the reap holds the write lock), so B's
    heartbeat comes after and B learns it was declared dead. Never a live B with interrupted
    runs."""
    from sqlalchemy import event

    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="0 0 1 1 *", now=clock.now())
    backend.workers.register_worker(Worker(id="A", host="h", pid=1, version="t", started_at=T0, heartbeat_at=T0))
    backend.workers.register_worker(Worker(id="B", host="h", pid=2, version="t", started_at=T0, heartbeat_at=T0))
    run_b = _running_execution(backend, job, "B", T0)
    now = T0 + timedelta(seconds=100)
    results: dict[str, object] = {}

    other = open_backend(backend_settings)  # B: another process, its own connections

    def before(conn, cursor, statement, parameters, context, executemany):
        values = parameters.values() if isinstance(parameters, dict) else parameters
        if (
            statement.lstrip().upper().startswith("UPDATE WORKERS")
            and "dead" in list(values or [])
            and "beat" not in results
        ):
            import threading

            thread = threading.Thread(target=lambda: results.__setitem__("beat", other.workers.heartbeat("B", now=now)))
            thread.start()
            thread.join(timeout=0.5 if backend.dialect == "sqlite" else 10)
            results["beat_done_first"] = not thread.is_alive()
            results["thread"] = thread

    event.listen(backend.engine, "before_cursor_execute", before)
    try:
        dead, interrupted = backend.workers.reap_stale_workers(stale_after=30, now=now)
    finally:
        event.remove(backend.engine, "before_cursor_execute", before)
    assert "thread" in results, "the reaper never tried to mark B dead (was B's heartbeat stale on the test clock?)"
    results["thread"].join(timeout=10)  # type: ignore[union-attr]
    other.close()
    status_b = {w.id: w.status for w in backend.workers.list_workers()}["B"]
    run_status = backend.get_execution(run_b.id).status
    if backend.dialect == "sqlite":
        assert results["beat_done_first"] is False and results["beat"] is False
        assert (dead, status_b, run_status) == (["A", "B"], "dead", "interrupted")
    else:
        assert results["beat_done_first"] is True and results["beat"] is True
        assert "B" not in dead and status_b == "running" and run_status == "running"
        assert [r.id for r in interrupted] == []


def test_a_restart_recovers_its_own_hosts_dead_instance_at_once(store, sqlite_settings, clock):
    """A predecessor on this host whose pid is gone is recovered at registration, long before
    its heartbeat would go stale."""
    import socket

    job = jobs.create_job(
        store,
        name="j",
        pipeline="ok",
        cron_expr="0 0 1 1 *",
        now=clock.now(),
        max_retries=1,
        retry_backoff_seconds=0,
        max_concurrent=10,
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.workers.register_worker(
        Worker(
            id="old",
            host=socket.gethostname(),
            pid=gone.pid,
            version="t",
            started_at=clock.now(),
            heartbeat_at=clock.now(),
        )
    )
    run = _running_execution(store, job, "old", clock.now())
    # A container restarted with the same hostname runs the service under the same pid again:
    # a row with our pid that this process did not register is a dead predecessor's.
    store.workers.register_worker(
        Worker(
            id="same-pid",
            host=socket.gethostname(),
            pid=os.getpid(),
            version="t",
            started_at=clock.now(),
            heartbeat_at=clock.now(),
        )
    )
    same_pid_run = _running_execution(store, job, "same-pid", clock.now())
    alive = Worker(
        id="peer",
        host=socket.gethostname(),
        pid=os.getppid(),
        version="t",
        started_at=clock.now(),
        heartbeat_at=clock.now(),
    )
    store.workers.register_worker(alive)
    peer_run = _running_execution(store, job, "peer", clock.now())
    elsewhere = Worker(
        id="elsewhere", host="another-host", pid=gone.pid, version="t", started_at=clock.now(), heartbeat_at=clock.now()
    )
    store.workers.register_worker(elsewhere)
    elsewhere_run = _running_execution(store, job, "elsewhere", clock.now())

    scheduler = fake_scheduler(store, sqlite_settings, clock, worker_id="new")
    scheduler.register()
    assert store.get_execution(run.id).status == "interrupted"
    assert store.get_execution(same_pid_run.id).status == "interrupted"
    assert store.get_execution(peer_run.id).status == "running", "a live process on this host"
    assert store.get_execution(elsewhere_run.id).status == "running", "another host: only its heartbeat tells"
    assert sorted((r.triggered_by, r.attempt) for r in store.runs.list_queue()) == [("retry", 2), ("retry", 2)]
    # Another instance of this same process (tests, an in-process scheduler) is not a predecessor.
    fake_scheduler(store, sqlite_settings, clock, worker_id="sibling").register()
    assert {w.id: w.status for w in store.workers.list_workers()}["new"] == "running"
    assert scheduler.poll_queue() == 2
    retried = [r for r in executions(store, job.id) if r.attempt == 2]
    assert [(r.status, r.worker_id) for r in retried] == [("success", "new"), ("success", "new")]


@pytest.mark.slow
def test_stop_marks_unfinished_runs_interrupted_and_queues_their_retries(sqlite_settings):
    """stop(grace): a run still going after the grace is interrupted (not 'cancelled', which is
    an operator's word and not retried), and its retry waits in the queue for the next
    instance."""
    sqlite_settings.scheduler.poll_interval = 0.2
    backend = open_backend(sqlite_settings)
    try:
        add_pipelines(backend, ok_spec("slow", seconds=30), ok_spec("quick", seconds=0.2))
        slow = jobs.create_job(
            backend, name="slow", pipeline="slow", cron_expr="0 0 1 1 *", max_retries=1, retry_backoff_seconds=0
        )
        quick = jobs.create_job(backend, name="quick", pipeline="quick", cron_expr="0 0 1 1 *")
        scheduler = Scheduler(backend, sqlite_settings)
        scheduler.start()
        slow_req = jobs.run_job_now(backend, slow.id)
        quick_req = jobs.run_job_now(backend, quick.id)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = {r.id: r.status for r in backend.list_executions(None, 10)}
            if rows.get(slow_req.execution_id) == "running" and rows.get(quick_req.execution_id) == "running":
                break
            time.sleep(0.05)
        started = time.monotonic()
        scheduler.stop(grace=1.0)
        took = time.monotonic() - started
        assert took < 5, took
        assert backend.get_execution(quick_req.execution_id).status == "success", "finished within the grace"
        stopped = backend.get_execution(slow_req.execution_id)
        assert stopped.status == "interrupted" and stopped.error == STOPPED_REASON
        assert [(r.triggered_by, r.attempt, r.job_id) for r in backend.runs.list_queue()] == [("retry", 2, slow.id)]
        assert {w.id: w.status for w in backend.workers.list_workers()}[scheduler.worker_id] == "stopped"
        # It stays interrupted: nothing overwrites it later.
        time.sleep(1.0)
        assert backend.get_execution(slow_req.execution_id).status == "interrupted"
    finally:
        backend.close()


def test_the_run_key_column_has_no_duplicates_after_a_reload(store, sqlite_settings, clock):
    """A scheduler restarted mid-minute resumes from next_run and never fires a fire twice."""
    job = every_minute(store, clock, misfire_grace_seconds=60)
    first = fake_scheduler(store, sqlite_settings, clock, worker_id="w1")
    for second in (30, 60, 90, 120):
        clock.set(T0 + timedelta(seconds=second))
        first.tick()
    second = fake_scheduler(store, sqlite_settings, clock, worker_id="w2")
    for s in (120, 150, 180):
        clock.set(T0 + timedelta(seconds=s))
        second.tick()
        first.tick()
    with store.engine.connect() as conn:
        keys = conn.execute(select(text("scheduled_for")).select_from(text("job_executions"))).scalars().all()
    assert len(keys) == len(set(keys)) == 3
    assert [r.status for r in executions(store, job.id)] == ["success"] * 3


def test_a_run_that_cannot_start_does_not_block_its_job(store, sqlite_settings, clock, monkeypatch):
    """The runner fails before it can record anything (the database went away for a moment):
    the fire is recorded failed and retried, and the next fire is not taken for an overlap of
    a row left 'queued' forever."""
    job = every_minute(store, clock, misfire_grace_seconds=60, max_retries=1, retry_backoff_seconds=0)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    real = scheduler.runner.run
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise PersistenceError("save_execution failed: database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler.runner, "run", flaky)
    clock.set(T0 + timedelta(minutes=1))
    scheduler.tick()
    first = executions(store, job.id)
    assert [(r.status, r.attempt) for r in first] == [("failed", 1)]
    assert "could not run" in first[0].error and "database is locked" in first[0].error
    assert scheduler.poll_queue() == 1
    clock.set(T0 + timedelta(minutes=2))
    assert len(scheduler.tick().claimed) == 1
    assert sorted((r.status, r.attempt, r.triggered_by) for r in executions(store, job.id)) == [
        ("failed", 1, "scheduler"),
        ("success", 1, "scheduler"),
        ("success", 2, "retry"),
    ]


@pytest.mark.parametrize(
    "start,days",
    [(datetime(2026, 3, 7, 5, 0, tzinfo=UTC), 3), (datetime(2026, 10, 31, 4, 0, tzinfo=UTC), 3)],
    ids=["spring-forward", "fall-back"],
)
def test_the_scheduler_fires_across_dst_nights_in_new_york(store, sqlite_settings, start, days):
    """Jobs at 01:30 (repeated on fall-back night) and 02:30 (skipped on spring-forward night)
    run once per local day; an hourly job runs once per real hour."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("America/New_York")
    clock = FakeClock(start)
    made = {
        expr: jobs.create_job(
            store,
            name=expr,
            pipeline="ok",
            cron_expr=expr,
            timezone="America/New_York",
            now=start,
            misfire_grace_seconds=0,
        )
        for expr in ("30 1 * * *", "30 2 * * *", "0 * * * *")
    }
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    scheduler.refresh_jobs()
    end = start + timedelta(days=days)
    while True:
        due = min(s.next_fire for s in scheduler._jobs.values())
        if due > end:
            break
        clock.set(due)
        scheduler.tick()
    for expr in ("30 1 * * *", "30 2 * * *"):
        rows = executions(store, made[expr].id)
        assert {r.status for r in rows} == {"success"}
        days_seen = [r.scheduled_for.astimezone(tz).date() for r in rows]
        assert len(days_seen) == len(set(days_seen)) == days, (expr, [r.scheduled_for for r in rows])
    hourly = [r.scheduled_for for r in executions(store, made["0 * * * *"].id)]
    assert {b - a for a, b in pairwise(hourly)} == {timedelta(hours=1)}
    assert len(hourly) == days * 24


def test_a_job_timeout_stops_the_run_and_counts_as_a_failure_to_retry(store, sqlite_settings, clock):
    add_pipelines(store, ok_spec("slow", seconds=30))
    job = jobs.create_job(
        store,
        name="t",
        pipeline="slow",
        cron_expr="0 * * * *",
        now=clock.now(),
        timeout_seconds=0.5,
        max_retries=1,
        retry_backoff_seconds=0,
    )
    clock.set(T0 + timedelta(hours=1))
    started = time.monotonic()
    fake_scheduler(store, sqlite_settings, clock).tick()
    assert time.monotonic() - started < 5
    [row] = executions(store, job.id)
    assert row.status == "timed_out" and "timed out" in row.error
    assert [(r.triggered_by, r.attempt) for r in store.runs.list_queue()] == [("retry", 2)]
