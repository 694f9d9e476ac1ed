"""What the scheduler asks of the database, on SQLite, PostgreSQL and MariaDB: fires claimed
exactly once, the run queue (priority, availability, by id, SKIP LOCKED / BEGIN IMMEDIATE), and
several threads and scheduler instances on one database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sched_helpers import T0, add_pipelines, create_jobs, executions, fake_scheduler, ok_spec

from mimir_tui.errors import NotFound
from mimir_tui.persistence import JobExecutionRecord, RunRequest, open_backend
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import DatabaseClock, FakeClock, SystemClock


def _job(backend, **options):
    add_pipelines(backend, ok_spec())
    return jobs.create_job(
        backend, name="j", pipeline="ok", cron_expr=options.pop("cron", "* * * * *"), now=T0, **options
    )


def _fire(job, when, worker="w", status="queued"):
    return JobExecutionRecord(
        job_id=job.id,
        pipeline=job.pipeline,
        start_time=when,
        status=status,
        triggered_by="scheduler",
        scheduled_for=when,
        worker_id=worker,
        context={},
        steps=[],
    )


def test_claim_fire_is_exactly_once_per_run_key(backend):
    job = _job(backend)
    fire = T0 + timedelta(minutes=1)
    assert backend.runs.claim_fire(_fire(job, fire, "a")) is True
    assert backend.runs.claim_fire(_fire(job, fire, "b")) is False
    assert backend.runs.claim_fire(_fire(job, fire + timedelta(microseconds=1), "b")) is True, "another instant"
    rows = executions(backend, job.id)
    assert [(r.scheduled_for, r.worker_id) for r in rows] == [(fire, "a"), (fire + timedelta(microseconds=1), "b")]
    # Many at once (the missed fires of a downtime): only the new ones land, nothing raises.
    batch = [_fire(job, fire + timedelta(minutes=i), "c", "missed") for i in range(5)]
    landed = backend.runs.claim_fires(batch)
    assert [r.scheduled_for for r in landed] == [fire + timedelta(minutes=i) for i in range(1, 5)]
    assert backend.runs.claim_fires(batch) == []
    assert len(executions(backend, job.id)) == 6
    with pytest.raises(ValueError):
        backend.runs.claim_fire(JobExecutionRecord(job_id=job.id, pipeline="ok", context={}, steps=[]))


def test_claim_fire_of_a_deleted_job_is_an_error_not_a_lost_race(backend, backend_settings):
    from mimir_tui.errors import PersistenceError

    job = _job(backend)
    jobs.delete_job(backend, backend_settings, job.id)
    with pytest.raises(PersistenceError):
        backend.runs.claim_fire(_fire(job, T0))


def test_delete_job_returns_what_went_with_it(backend):
    """Read in the delete's transaction: the job's executions (their ids, for their log files)
    and its queued runs; another job's are untouched."""
    gone, kept = _job(backend), _job(backend)
    fires = [_fire(gone, T0 + timedelta(minutes=m), status="success") for m in range(3)]
    for record in [*fires, _fire(kept, T0, status="success")]:
        backend.save_execution(record)
    backend.runs.enqueue(RunRequest(job_id=gone.id, pipeline=gone.pipeline))
    backend.runs.enqueue(RunRequest(job_id=kept.id, pipeline=kept.pipeline))
    deletion = backend.delete_job(gone.id)
    assert sorted(deletion.execution_ids) == sorted(r.id for r in fires) and deletion.queued_runs == 1
    assert [e.job_id for e in executions(backend)] == [kept.id]
    assert [r.job_id for r in backend.runs.list_queue()] == [kept.id]
    with pytest.raises(NotFound):
        backend.delete_job(gone.id)


def test_the_queue_gives_the_highest_priority_first_then_the_oldest(backend):
    job = _job(backend, enabled=False, max_concurrent=10)
    made = {}
    for name, priority, offset in (
        ("old-low", 0, 0),
        ("new-high", 5, 2),
        ("old-high", 5, 1),
        ("mid", 1, 0),
        ("future", 9, 60),
    ):
        made[name] = backend.runs.enqueue(
            RunRequest(
                job_id=job.id,
                pipeline="ok",
                priority=priority,
                available_at=T0 + timedelta(seconds=offset),
                requested_by=name,
            )
        )
    now = T0 + timedelta(seconds=10)
    order = []
    while (got := backend.runs.claim_request("w", now=now)) is not None:
        request, execution = got
        order.append(request.requested_by)
        assert execution.id == request.execution_id
        assert (execution.status, execution.worker_id, execution.triggered_by) == ("running", "w", "manual")
    assert order == ["old-high", "new-high", "mid", "old-low"], "a request not yet available waits"
    assert [r.requested_by for r in backend.runs.list_queue()] == ["future"]
    assert backend.runs.claim_request("w", now=T0 + timedelta(seconds=60))[0].requested_by == "future"
    assert backend.runs.list_queue() == []
    for name in order:
        assert backend.get_execution(made[name].execution_id).status == "running"


def test_claim_request_by_id_takes_that_one_once(backend):
    job = _job(backend, enabled=False)
    urgent = backend.runs.enqueue(RunRequest(job_id=job.id, pipeline="ok", priority=9))
    mine = backend.runs.enqueue(RunRequest(job_id=job.id, pipeline="ok", priority=0, attempt=3, triggered_by="retry"))
    request, execution = backend.runs.claim_request("cli", request_id=mine.id)
    assert request.id == mine.id and execution.id == mine.execution_id
    assert (execution.attempt, execution.triggered_by, execution.worker_id) == (3, "retry", "cli")
    assert backend.runs.claim_request("other", request_id=mine.id) is None, "claimed already"
    assert [r.id for r in backend.runs.list_queue()] == [urgent.id]


def _claim_all(settings, worker: str, out: list, errors: list, barrier: threading.Barrier) -> None:
    backend = open_backend(settings)
    try:
        barrier.wait()
        while True:
            got = backend.runs.claim_request(worker)
            if got is None:
                return
            out.append(got[0].id)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))
    finally:
        backend.close()


def test_threads_with_connections_of_their_own_claim_each_request_exactly_once(backend, backend_settings):
    """SKIP LOCKED on PostgreSQL and MariaDB, BEGIN IMMEDIATE on SQLite: no request is claimed
    twice, none is lost, and nobody gets an error. (Requests of four jobs: claims of one job
    take turns, see test_max_concurrent.py.)"""
    job = _job(backend, enabled=False, max_concurrent=1000)
    more = [
        jobs.create_job(backend, name=f"j{i}", pipeline="ok", cron_expr="* * * * *", max_concurrent=1000)
        for i in range(3)
    ]
    n, threads = 120, 4
    ids = {
        backend.runs.enqueue(RunRequest(job_id=[job, *more][i % 4].id, pipeline="ok", priority=i % 3)).id
        for i in range(n)
    }
    claimed: list[list[str]] = [[] for _ in range(threads)]
    errors: list[str] = []
    barrier = threading.Barrier(threads)
    workers = [
        threading.Thread(target=_claim_all, args=(backend_settings, f"w{i}", claimed[i], errors, barrier))
        for i in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert errors == []
    everything = [i for part in claimed for i in part]
    assert len(everything) == n and set(everything) == ids
    assert sum(1 for part in claimed if part) >= 2, "the work was shared"
    assert backend.runs.list_queue() == []
    rows = backend.list_executions(None, 1000)
    assert len(rows) == n and {r.status for r in rows} == {"running"}


def _run_together(run, instances: int, backends: list, *, timeout: float) -> None:
    """``run(i)`` for each instance, each in a thread of its own; then the instances'
    backends are closed."""
    threads = [threading.Thread(target=run, args=(i,)) for i in range(instances)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=timeout)
    finally:
        for b in backends:
            b.close()


def test_several_schedulers_ticking_the_same_fires_claim_each_once(backend, backend_settings):
    """Three instances (connections of their own) tick the same due fires at the same moment:
    each fire is claimed by exactly one and run once; the others lose the race quietly."""
    job = _job(backend, cron="* * * * * *", misfire_grace_seconds=60)
    instances = 3
    clock = FakeClock(T0)
    backends = [open_backend(backend_settings) for _ in range(instances)]
    schedulers = [fake_scheduler(b, backend_settings, clock, worker_id=f"s{i}") for i, b in enumerate(backends)]
    errors: list[str] = []
    claimed = [0] * instances
    rounds = 8
    barrier = threading.Barrier(instances)

    def run(i: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait(timeout=60)
                if i == 0:
                    clock.set(T0 + timedelta(seconds=r + 1))
                barrier.wait(timeout=60)
                claimed[i] += len(schedulers[i].tick().claimed)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
            barrier.abort()

    _run_together(run, instances, backends, timeout=180)
    assert errors == []
    rows = executions(backend, job.id)
    assert [r.scheduled_for for r in rows] == [T0 + timedelta(seconds=s) for s in range(1, rounds + 1)]
    runs = [r for r in rows if r.status != "missed"]
    assert sum(claimed) == len(runs) >= 1
    assert {r.status for r in runs} == {"success"}
    # A fire is either run or recorded missed (an instance saw the previous run still active).
    assert all(r.status in ("success", "missed") for r in rows)


def test_a_thousand_fires_due_at_one_instant_run_once_each(backend, backend_settings):
    """Issue 12: 1,000 jobs due at the same instant, three instances (connections of their own)
    ticking at that instant on the fake clock: 1,000 runs, one per fire, each run once, claimed
    in one transaction per instance, and every job's next_run moved on by whoever claimed it."""
    add_pipelines(backend, ok_spec())
    count, instances = 1000, 3
    create_jobs(backend, count, pipeline="ok", cron_expr="* * * * *", now=T0)
    fire = T0 + timedelta(minutes=1)
    clock = FakeClock(fire)
    backends = [open_backend(backend_settings) for _ in range(instances)]
    schedulers = [fake_scheduler(b, backend_settings, clock, worker_id=f"s{i}") for i, b in enumerate(backends)]
    for scheduler in schedulers:
        scheduler.refresh_jobs()
    batches = [0] * instances
    for i, b in enumerate(backends):
        real = b.runs.claim_batch

        def counted(fires, overlap, real=real, i=i):
            batches[i] += 1
            return real(fires, overlap)

        b.runs.claim_batch = counted  # counts the transactions; the claim itself is the real one
    reports: list = [None] * instances
    errors: list[str] = []
    barrier = threading.Barrier(instances)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            reports[i] = schedulers[i].tick()
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    _run_together(run, instances, backends, timeout=600)
    assert errors == []
    rows = executions(backend)
    assert len(rows) == count, "one execution per fire, none twice"
    assert sorted(r.job_id for r in rows) == sorted(j.id for j in backend.list_jobs())
    assert {(r.scheduled_for, r.status, r.attempt) for r in rows} == {(fire, "success", 1)}
    assert sum(len(r.claimed) for r in reports) == count
    assert sum(len(r.missed) + r.errors for r in reports) == 0
    assert {r.worker_id for r in rows} <= {"s0", "s1", "s2"}
    assert batches == [1] * instances, "one claim transaction per instance for the whole tick"
    assert {j.next_run for j in backend.list_jobs()} == {fire + timedelta(minutes=1)}
    assert {j.last_run for j in backend.list_jobs()} == {fire}


def test_heartbeats_use_the_database_clock(backend, monkeypatch):
    """Instances judge heartbeats on one clock, the database's, so a machine whose clock is off
    does not take a live peer for dead (nor look dead itself)."""
    from datetime import timedelta

    from mimir_tui.persistence import Worker, db, utcnow, workers

    db_now = backend.database_now()
    assert db_now.tzinfo is not None
    assert abs(db_now - utcnow()) < timedelta(seconds=5)  # the test servers share this clock
    if backend.dialect == "sqlite":
        return  # one machine, one clock: database_now is this machine's
    # This machine's clock now runs 10 minutes slow.
    real = utcnow
    for module in (workers, db):
        monkeypatch.setattr(module, "utcnow", lambda: real() - timedelta(minutes=10), raising=False)
    backend.workers.register_worker(Worker(id="w-slow-clock", host="h", pid=1, version="t"))
    assert backend.workers.heartbeat("w-slow-clock")
    row = next(w for w in backend.workers.list_workers() if w.id == "w-slow-clock")
    assert abs(row.heartbeat_at - db_now) < timedelta(seconds=5)
    dead, _ = backend.workers.reap_stale_workers(stale_after=30)
    assert "w-slow-clock" not in dead


def test_a_peer_in_another_pid_namespace_is_not_judged_by_its_pid(backend):
    """Two containers with one hostname: a pid from another pid namespace says nothing here,
    so a live peer whose pid happens to be free in ours is not declared crashed."""
    import socket

    from mimir_tui.persistence import Worker
    from mimir_tui.scheduler import workers as worker_ids

    host = socket.gethostname()
    free_pid = 2**22 + 12345  # above pid_max: no such process here
    backend.workers.register_worker(
        Worker(id="peer-other-ns", host=host, pid=free_pid, version="t", instance_key="another-boot:4026531999")
    )
    backend.workers.register_worker(
        Worker(id="peer-same-ns", host=host, pid=free_pid, version="t", instance_key=worker_ids.instance_key())
    )
    workers = {w.id: w for w in backend.workers.list_workers()}
    assert not worker_ids._crashed_here(workers["peer-other-ns"], host)
    assert worker_ids._crashed_here(workers["peer-same-ns"], host)


class _OffClock(SystemClock):
    """This machine's clock, off by ``skew`` (settable)."""

    skew = timedelta(0)

    def now(self):
        return super().now() + self.skew


class _OffDatabaseClock(DatabaseClock, _OffClock):
    pass


def test_the_schedulers_clock_is_the_databases(backend, caplog):
    """A machine whose clock is 10 minutes slow measures the offset and runs on the database's
    time; when its clock is stepped, the next measurement follows at once."""
    clock = _OffDatabaseClock(backend)
    clock.skew = -timedelta(minutes=10)
    with caplog.at_level("WARNING", logger="mimir.scheduler"):
        offset = clock.sync()
    if backend.dialect == "sqlite":  # one machine, one clock: nothing to measure
        assert offset == timedelta(0) and not caplog.records
        return
    assert abs(offset - timedelta(minutes=10)) < timedelta(seconds=1)
    assert abs(clock.now() - backend.database_now()) < timedelta(seconds=1)
    import re

    said = re.search(r"clock is ([0-9.]+) s behind the database server's", caplog.text)
    assert said and abs(float(said.group(1)) - 600) < 1, caplog.text  # within the measurement's error
    for _ in range(3):
        clock.sync()
    assert abs(clock.now() - backend.database_now()) < timedelta(seconds=1)
    clock.skew = timedelta(minutes=3)  # NTP steps this machine's clock: now 3 minutes fast
    assert abs(clock.sync() + timedelta(minutes=3)) < timedelta(seconds=1)
    assert abs(clock.now() - backend.database_now()) < timedelta(seconds=1)


def test_an_instance_with_a_fast_clock_fires_on_the_databases_time(backend, backend_settings):
    """Without the database's clock, an instance 10 minutes fast would fire 10 minutes early."""
    add_pipelines(backend, ok_spec())
    db_now = backend.database_now()
    job = jobs.create_job(
        backend, name="every-second", pipeline="ok", cron_expr="* * * * * *", now=db_now - timedelta(seconds=3)
    )
    clock = _OffDatabaseClock(backend)
    clock.skew = timedelta(minutes=10)
    scheduler = fake_scheduler(backend, backend_settings, clock)
    scheduler.register()  # measures the offset
    report = scheduler.tick()
    fired = [r.scheduled_for for r in report.claimed]
    assert fired, "the job is due every second"
    if backend.dialect != "sqlite":  # on SQLite the skewed clock is the database's too
        assert all(f <= backend.database_now() for f in fired)
        assert all(f >= db_now - timedelta(seconds=5) for f in fired)
    assert {r.job_id for r in report.claimed} == {job.id}


def test_a_run_asked_for_on_a_machine_with_a_fast_clock_is_available_at_once(backend):
    from mimir_tui.persistence import utcnow

    job = _job(backend)
    request = RunRequest(job_id=job.id, pipeline=job.pipeline)
    # Its default time as a machine 10 minutes fast would have made it (the field was not given).
    request.__dict__["available_at"] = utcnow() + timedelta(minutes=10)
    backend.runs.enqueue(request)
    db_now = backend.database_now()
    assert request.available_at == request.created_at <= db_now
    got = backend.runs.claim_request("w", now=db_now)
    assert got is not None and got[0].id == request.id
    # A time given is kept (a retry's backoff).
    later = backend.runs.enqueue(
        RunRequest(job_id=job.id, pipeline=job.pipeline, available_at=db_now + timedelta(hours=1))
    )
    assert later.available_at == db_now + timedelta(hours=1)
    assert backend.runs.claim_request("w", now=backend.database_now()) is None


def test_a_job_created_on_a_machine_with_a_slow_clock_starts_on_the_databases_time(
    backend, backend_settings, monkeypatch
):
    """Its first next_run comes from the database's clock, as the schedulers' fires do: no
    fires dated before the job existed (from a slow machine), none skipped (from a fast one)."""
    from mimir_tui.scheduler.core import Scheduler

    add_pipelines(backend, ok_spec())
    monkeypatch.setattr(jobs, "utcnow", lambda: backend.database_now() - timedelta(minutes=10))
    created = backend.database_now()
    job = jobs.create_job(backend, name="every-minute", pipeline="ok", cron_expr="* * * * *")
    assert job.next_run > created
    scheduler = Scheduler(backend, backend_settings, inline=True)
    scheduler.register()
    report = scheduler.tick()
    assert [r for r in report.missed + report.claimed if r.scheduled_for < created] == []
    edited = jobs.update_job(backend, job.id, cron_expr="*/2 * * * *")
    assert edited.next_run > created


def test_runs_on_a_machine_with_a_slow_clock_are_recorded_on_the_databases_time(backend, backend_settings, monkeypatch):
    """A run's start, end and step times, and its log lines, come from the clock the schedulers
    fire on: the history of runs from several machines sorts as they happened."""
    from mimir_tui.pipelines import runner as runner_module
    from mimir_tui.scheduler.core import Scheduler

    if backend.dialect != "sqlite":  # this machine's clock, as the runner would read it, 10 min slow
        real = runner_module.utcnow
        monkeypatch.setattr(runner_module, "utcnow", lambda: real() - timedelta(minutes=10))

    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="0 0 1 1 *")
    clock = _OffDatabaseClock(backend)
    if backend.dialect != "sqlite":  # on SQLite this machine's clock is the database's
        clock.skew = -timedelta(minutes=10)
    scheduler = Scheduler(backend, backend_settings, clock=clock, inline=True, worker_id="slow-machine")
    scheduler.register()  # measures the offset
    request = jobs.run_job_now(backend, job.id)
    assert scheduler.poll_queue() == 1
    record = backend.get_execution(request.execution_id)
    db_now = backend.database_now()
    if backend.dialect != "sqlite":
        assert abs(record.start_time - db_now) < timedelta(seconds=5)
        assert abs(record.step_records()[0].start_time - db_now) < timedelta(seconds=5)
        log_text = scheduler.runner.log_path(record.id).read_text()
        assert (
            db_now.strftime("%Y-%m-%dT%H:%M") in log_text
            or (db_now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M") in log_text
        )
    assert record.status == "success" and 0 <= record.duration < 5000


def test_a_batch_of_fires_reads_nothing_per_run_and_writes_each_run_twice(backend, backend_settings):
    """Issue 12: the database work of 20 fires due at one instant, counted by the store's own
    operation metrics: one claim transaction and one read of the pipelines' versions for the
    tick; per run, its first save (running) and its end (with the job's last_result); no read
    of a run, a version or a job per fire."""
    add_pipelines(backend, ok_spec())
    count = 20
    for i in range(count):
        jobs.create_job(backend, name=f"j{i:02d}", pipeline="ok", cron_expr="* * * * *", now=T0)
    fire = T0 + timedelta(minutes=1)
    scheduler = fake_scheduler(backend, backend_settings, FakeClock(fire))
    scheduler.refresh_jobs()
    scheduler.executor.runner.load("ok")  # import time work done: the spec is parsed at the first run
    before = {op: s["count"] for op, s in backend.metrics.snapshot().items()}
    report = scheduler.tick()
    after = {op: s["count"] for op, s in backend.metrics.snapshot().items()}
    used = {op: n - before.get(op, 0) for op, n in after.items() if n != before.get(op, 0)}
    assert len(report.claimed) == count
    assert used.pop("claim_batch") == 1
    assert used.pop("pipeline_versions") == 1
    assert used.pop("save_execution") == 2 * count
    assert used.pop("jobs_signature", 0) <= 1
    assert used.pop("pipeline_version", 0) <= 1  # the first run parses the spec, once
    assert used.pop("get_pipeline", 0) <= 1
    assert used == {}, f"per-fire work a batch could answer: {used}"
    assert {j.last_result for j in backend.list_jobs()} == {"success"}


def test_run_slots_take_turns_on_sqlite_and_not_on_a_server(backend, backend_settings):
    """On SQLite a run's database calls are this process's work, and its run slots take turns
    (pipelines.loops); on a server each call is a wait that the other slots should use."""
    from mimir_tui.pipelines import loops
    from mimir_tui.scheduler.core import Scheduler

    async def turn_held() -> bool:
        return loops.holds_turn()

    scheduler = Scheduler(backend, backend_settings)
    scheduler.start()
    try:
        held: list[bool] = []
        scheduler.pool.submit(lambda: held.append(loops.run(turn_held())))
        assert scheduler.pool.wait_idle(10)
        assert held == [backend.dialect == "sqlite"]
    finally:
        scheduler.stop(grace=5)
