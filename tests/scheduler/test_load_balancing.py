"""Load balancing between instances: one whose run slots are all taken leaves a due fire, for a
few seconds, to a peer that reported free slots at its heartbeat; a fire nobody takes is claimed
all the same. On SQLite, PostgreSQL and MariaDB, with real run pools."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sched_helpers import T0, add_pipelines, executions, ok_spec

from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler
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
