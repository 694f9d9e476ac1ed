"""Load balancing between instances: one whose run slots are all taken leaves a due fire, for a
few seconds, to a peer that reported free slots at its heartbeat; on a server, one that has
claimed as many runs as it can start soon (``CLAIM_AHEAD`` per slot) leaves the rest of a burst
to whichever instance has room first; a fire nobody takes is claimed all the same. On SQLite,
PostgreSQL and MariaDB, with real run pools."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sched_helpers import T0, add_pipelines, executions, ok_spec, saved_run

from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import CLAIM_AHEAD, Scheduler
from mimir_tui.scheduler.pool import RunPool

FIRE = T0 + timedelta(minutes=1)  # the job's first fire


@pytest.fixture
def blocker():
    release = threading.Event()
    yield release
    release.set()


def instance(backend, settings, clock, worker_id: str, slots: int, busy: int, release: threading.Event) -> Scheduler:
    """A registered instance with a real pool of ``slots`` threads, ``busy`` of them taken."""
    scheduler = Scheduler(backend, settings, clock=clock, worker_id=worker_id, inline=False)
    scheduler.pool = RunPool(slots, name=f"test-{worker_id}")
    for _ in range(busy):
        scheduler.pool.submit(lambda: release.wait(30))
    scheduler.register()
    return scheduler


def job(backend, **options):
    add_pipelines(backend, ok_spec())
    return jobs.create_job(backend, name="every-minute", pipeline="ok", cron_expr="* * * * *", now=T0, **options)


def shut(*schedulers: Scheduler) -> None:
    for s in schedulers:
        s.pool.wait_idle(10)
        s.pool.shutdown()


def test_a_busy_instance_leaves_the_fire_to_a_peer_with_room(backend, backend_settings, blocker):
    j = job(backend)
    clock = FakeClock(FIRE - timedelta(seconds=1))  # the instances register just before the fire
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    idle = instance(backend, backend_settings, clock, "idle", slots=2, busy=0, release=blocker)
    loads = {w.id: (w.capacity, w.running) for w in backend.workers.list_workers()}
    assert loads == {"busy": (1, 1), "idle": (2, 0)}

    clock.set(FIRE + timedelta(seconds=1))
    report = busy.tick()
    assert (report.claimed, report.deferred) == ([], 1)
    report = idle.tick()
    assert [r.scheduled_for for r in report.claimed] == [FIRE]
    # Past the window the busy one looks again: the fire is taken, nothing else is written.
    clock.set(FIRE + timedelta(seconds=6))
    report = busy.tick()
    assert (report.claimed, report.missed, report.deferred) == ([], [], 0)
    blocker.set()
    shut(busy, idle)
    rows = executions(backend, j.id)
    assert [(r.scheduled_for, r.worker_id, r.status) for r in rows] == [(FIRE, "idle", "success")]


def test_a_fire_no_peer_takes_is_claimed_after_the_window(backend, backend_settings, blocker):
    job(backend)
    clock = FakeClock(FIRE - timedelta(seconds=1))  # the instances register just before the fire
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    instance(backend, backend_settings, clock, "idle-but-silent", slots=2, busy=0, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    assert busy.tick().deferred == 1
    assert busy._jobs and all(s.wake_at == FIRE + timedelta(seconds=5) for s in busy._jobs.values())
    clock.set(FIRE + timedelta(seconds=5))
    report = busy.tick()
    assert [r.scheduled_for for r in report.claimed] == [FIRE] and report.deferred == 0
    blocker.set()
    shut(busy)


def test_no_deferring_without_a_peer_with_room_or_with_room_here(backend, backend_settings, blocker):
    j = job(backend, max_concurrent=5)  # the first run waits for a slot while the second fires
    clock = FakeClock(FIRE - timedelta(seconds=1))  # the instances register just before the fire
    alone = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    instance(backend, backend_settings, clock, "also-busy", slots=1, busy=1, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    assert [r.scheduled_for for r in alone.tick().claimed] == [FIRE]  # no peer has room: at once
    roomy = instance(backend, backend_settings, clock, "roomy", slots=2, busy=1, release=blocker)
    clock.set(FIRE + timedelta(minutes=1, seconds=1))
    assert [r.scheduled_for for r in roomy.tick().claimed] == [FIRE + timedelta(minutes=1)]  # room here
    blocker.set()
    shut(alone, roomy)
    assert len(executions(backend, j.id)) == 2


def test_the_window_is_at_most_half_the_jobs_misfire_grace(backend, backend_settings, blocker):
    job(backend, misfire_grace_seconds=4)
    clock = FakeClock(FIRE - timedelta(seconds=1))  # the instances register just before the fire
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    instance(backend, backend_settings, clock, "idle", slots=2, busy=0, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    assert busy.tick().deferred == 1
    clock.set(FIRE + timedelta(seconds=2))  # half of 4 s: claimed here, still within the grace
    report = busy.tick()
    assert [(r.scheduled_for, r.status) for r in report.claimed] == [(FIRE, "queued")]
    blocker.set()
    shut(busy)


def test_defer_when_busy_zero_turns_it_off(backend, backend_settings, blocker):
    job(backend)
    backend_settings.scheduler.defer_when_busy = 0
    clock = FakeClock(FIRE - timedelta(seconds=1))  # the instances register just before the fire
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    instance(backend, backend_settings, clock, "idle", slots=2, busy=0, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    assert [r.scheduled_for for r in busy.tick().claimed] == [FIRE]
    blocker.set()
    shut(busy)


def test_a_burst_is_left_to_peers_only_up_to_their_free_slots(backend, backend_settings, blocker):
    """Three jobs due at once, a peer with two free slots: two are left to it, the third is
    claimed at once (else the peer would end up with the whole burst queued behind its slots
    while this instance sits idle once its own run ends)."""
    add_pipelines(backend, ok_spec())
    for name in ("a", "b", "c"):
        jobs.create_job(backend, name=name, pipeline="ok", cron_expr="* * * * *", now=T0)
    clock = FakeClock(FIRE - timedelta(seconds=1))
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    instance(backend, backend_settings, clock, "idle", slots=2, busy=0, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    report = busy.tick()
    assert (len(report.claimed), report.deferred) == (1, 2)
    blocker.set()
    shut(busy)


def test_a_draining_peer_is_no_room(backend, backend_settings, blocker):
    """A peer shutting down (``stopping``, waiting out its grace) still heartbeats its free
    slots but claims no more fires: the busy instance claims at once."""
    import time

    job(backend)
    clock = FakeClock(FIRE - timedelta(seconds=1))
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)
    peer = instance(backend, backend_settings, clock, "peer", slots=4, busy=1, release=blocker)
    stopper = threading.Thread(target=peer.stop, kwargs={"grace": 20}, daemon=True)
    stopper.start()  # SIGTERM: it drains, waiting for its one run
    deadline = time.monotonic() + 5
    while {w.id: w.status for w in backend.workers.list_workers()}["peer"] != "stopping":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    peer.beat()  # what its heartbeat thread does meanwhile
    clock.set(FIRE + timedelta(seconds=1))
    report = busy.tick()
    assert report.deferred == 0 and [r.scheduled_for for r in report.claimed] == [FIRE]
    blocker.set()
    stopper.join(10)
    shut(busy)


def test_a_failed_read_of_the_peers_load_fires_here(backend, backend_settings, blocker, monkeypatch):
    from mimir_tui.errors import PersistenceError

    add_pipelines(backend, ok_spec())
    a = jobs.create_job(backend, name="a", pipeline="ok", cron_expr="* * * * *", now=T0, priority=5)
    b = jobs.create_job(backend, name="b", pipeline="ok", cron_expr="* * * * *", now=T0, misfire_grace_seconds=0)
    clock = FakeClock(FIRE - timedelta(seconds=1))
    busy = instance(backend, backend_settings, clock, "busy", slots=1, busy=1, release=blocker)

    def down(*args, **kwargs):
        raise PersistenceError("list_workers failed: server closed the connection unexpectedly")

    monkeypatch.setattr(backend.workers, "live_workers", down)
    clock.set(FIRE + timedelta(seconds=1))
    report = busy.tick()
    assert {r.job_id for r in report.claimed} == {a.id, b.id} and report.errors == 0
    blocker.set()
    shut(busy)


def test_a_burst_is_claimed_as_runs_end_and_shared_with_a_peer(backend, backend_settings, blocker, caplog):
    """On a server, forty jobs due at once, two instances of two slots: each claims
    CLAIM_AHEAD runs per slot, leaves the rest for now, and is woken to claim more as its runs end, without trying
    the fires the other has claimed meanwhile; between them every fire runs exactly once, and
    both run a share of the burst."""
    if not backend.db.dialect.skip_locked:
        pytest.skip("SQLite: an instance claims every due fire (see Scheduler._defer)")
    caplog.set_level(logging.INFO, logger="mimir.scheduler")
    add_pipelines(backend, ok_spec())
    ids = [
        jobs.create_job(backend, name=f"job-{i:02d}", pipeline="ok", cron_expr="* * * * *", now=T0).id
        for i in range(40)
    ]
    clock = FakeClock(FIRE - timedelta(seconds=1))
    a = instance(backend, backend_settings, clock, "a", slots=2, busy=0, release=blocker)
    b = instance(backend, backend_settings, clock, "b", slots=2, busy=0, release=blocker)
    clock.set(FIRE + timedelta(seconds=1))
    gate = threading.Event()  # holds a's first runs, so that b claims while they are under way
    a.pool.submit(gate.wait)
    a.pool.submit(gate.wait)
    first = a.tick()
    assert (len(first.claimed), first.deferred) == (2 * CLAIM_AHEAD - 2, 40 - (2 * CLAIM_AHEAD - 2))
    second = b.tick()
    assert len(second.claimed) == 2 * CLAIM_AHEAD and not {r.job_id for r in first.claimed} & {
        r.job_id for r in second.claimed
    }
    assert not a._fire_wake.is_set()
    gate.set()  # a's runs end: its fire loop is woken to claim more
    assert a._fire_wake.wait(10)
    for _ in range(200):  # what the two fire loops do as their runs end
        reports = [a.tick(), b.tick()]
        # Each reads first what the other has claimed meanwhile, and tries none of it.
        assert [r.lost for r in reports] == [0, 0]
        if not any(r.deferred for r in reports):
            break
        a.pool.wait_idle(10)
        b.pool.wait_idle(10)
    shut(a, b)
    rows = [r for job_id in ids for r in executions(backend, job_id)]
    assert sorted((r.job_id, r.scheduled_for, r.status) for r in rows) == [(i, FIRE, "success") for i in sorted(ids)]
    by_worker = {w: sum(r.worker_id == w for r in rows) for w in ("a", "b")}
    assert min(by_worker.values()) >= 2 * CLAIM_AHEAD, by_worker
    # The log has a line per burst and instance, not one per claim.
    lines = [r for r in caplog.records if r.name == "mimir.scheduler" and r.getMessage().startswith("fired ")]
    runs, claims = sum(r.args[0] for r in lines), sum(r.args[2] for r in lines)
    assert runs == 40 and len(lines) < claims, [r.getMessage() for r in lines]


def test_a_job_row_a_peer_holds_is_skipped_and_tried_again(backend, backend_settings):
    """On a server a claim skips the job rows another transaction holds (``SKIP LOCKED``): the
    other jobs of the tick are claimed at once, and the held one at a later tick. On SQLite
    the write transaction is one at a time: the claim waits instead."""
    from mimir_tui.persistence import open_backend

    add_pipelines(backend, ok_spec())
    held = jobs.create_job(backend, name="held", pipeline="ok", cron_expr="* * * * *", now=T0)
    free = jobs.create_job(backend, name="free", pipeline="ok", cron_expr="* * * * *", now=T0)
    clock = FakeClock(FIRE + timedelta(seconds=1))
    scheduler = Scheduler(backend, backend_settings, clock=clock, worker_id="me", inline=True)
    if not backend.db.dialect.skip_locked:
        pytest.skip("SQLite: one write transaction at a time (tests/reliability covers its waits)")
    other = open_backend(backend_settings)
    try:
        with other.db.raw_write() as tx:
            tx.fetch(other.runs._lock_jobs(1), {"k0": held.id})  # a peer's claim of it, under way
            report = scheduler.tick()
            assert [r.job_id for r in report.claimed] == [free.id] and report.deferred == 1
        clock.set(FIRE + timedelta(seconds=2))
        report = scheduler.tick()
        assert [r.job_id for r in report.claimed] == [held.id] and report.deferred == 0
    finally:
        other.close()
    assert [(r.scheduled_for, r.status) for r in executions(backend, held.id)] == [(FIRE, "success")]


def test_a_runs_end_saved_while_a_peer_claims_its_job_does_not_deadlock(backend, backend_settings):
    """Seen in bench/scheduler.py (PostgreSQL, two instances sharing 1,000 fires: 37 deadlocks,
    each a second lost). Instance B's run of a job ends while instance A's claim, which has
    locked the job's row, inserts the same fire's run key. B's save writes the job's row first
    (it waits for A), so A's insert never waits for B's update of the run: no deadlock."""
    from mimir_tui.persistence import open_backend
    from mimir_tui.persistence.executions import COLUMNS
    from mimir_tui.persistence.models import EXECUTIONS, values_of

    j = job(backend)
    if not backend.db.dialect.skip_locked:
        pytest.skip("SQLite: one write transaction at a time")
    ran = saved_run(backend, j, "b", scheduled_for=FIRE, start_time=FIRE)  # B's run, under way
    a = open_backend(backend_settings)
    saved: list = []
    try:
        with a.db.raw_write() as tx:
            tx.fetch(a.runs._lock_jobs(1), {"k0": j.id})  # A's claim has locked the job's row
            ran.status, ran.end_time = "success", FIRE + timedelta(seconds=1)
            ender = threading.Thread(
                target=lambda: saved.append(backend.save_execution(ran, only_unfinished=True, job_result=True))
            )
            ender.start()
            ender.join(0.5)
            assert ender.is_alive(), "B's save waits for A's lock on the job's row"
            again = ran.model_copy(update={"id": "a-claim", "status": "queued", "end_time": None, "worker_id": "a"})
            statement = a.db.prepare("claim_fires_batch", a.runs._insert_skipping_claimed, COLUMNS)
            tx.execute_many(statement, [values_of(again, EXECUTIONS)])  # A's insert: the run key is B's
        ender.join(10)
    finally:
        a.close()
    assert saved == [True]
    assert [(r.id, r.status) for r in executions(backend, j.id)] == [(ran.id, "success")]
    assert backend.get_job(j.id).last_result == "success"
