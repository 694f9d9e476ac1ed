"""A run that ends while the database is away keeps its end (issue 9, item 4: a run that
ended ``success`` while saves failed, PostgreSQL down 45 s or a full disk, was recorded failed
or interrupted and retried, so its side effects ran twice). The database is made unavailable
for real (tests/outage.py): another process holds SQLite's write lock; a proxy in front of
PostgreSQL or MariaDB is cut. On all three backends."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from outage import Outage
from sched_helpers import T0, add_pipelines, executions, fake_scheduler, wait_until

from mimir_tui.errors import OutcomeNotSaved, PersistenceError
from mimir_tui.persistence import FINISHED, JobExecutionRecord, Worker, open_backend
from mimir_tui.pipelines.cancel import CancelToken
from mimir_tui.pipelines.runner import PipelineRunner
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler


@pytest.fixture
def outage(backend_settings):
    cut = Outage(backend_settings)
    settings = cut.settings.scheduler
    settings.poll_interval, settings.heartbeat_interval, settings.stale_after = 0.2, 0.5, 2
    try:
        yield cut
    finally:
        cut.close()


def _slow_job(backend, seconds: float):
    spec = PipelineSpec(
        name="side-effect", steps=[{"name": "work", "plugin": "Data_Processing.delay", "config": {"seconds": seconds}}]
    )
    add_pipelines(backend, spec)
    return jobs.create_job(
        backend, name="once", pipeline="side-effect", cron_expr="0 0 1 1 *", max_retries=2, retry_backoff_seconds=0
    )


def _status(backend, execution_id: str) -> str | None:
    try:
        return backend.get_execution(execution_id).status
    except Exception:  # noqa: BLE001 - not there yet
        return None


def _wait_for_its_step(backend, execution_id: str) -> None:
    """Until the run is executing its step (a claimed run is ``running`` before that)."""

    def started() -> bool:
        try:
            return bool(backend.get_execution(execution_id).steps)
        except Exception:  # noqa: BLE001 - not there yet
            return False

    wait_until(started, 30, what="the run to start its step")


def _instances(settings, *specs: tuple[str, list[str]]) -> list[Scheduler]:
    return [Scheduler(open_backend(settings), settings, worker_id=w, queues=q) for w, q in specs]


def _stop(*instances: Scheduler, grace: float = 5) -> None:
    for instance in instances:
        instance.stop(grace=grace)
        instance.backend.close()


@pytest.mark.slow
def test_a_run_that_ends_while_the_database_is_away_keeps_its_end(backend, outage):
    """The run ends ``success`` during an outage longer than ``stale_after``, in which the
    other instance's heartbeats fail too. The owner saves the end once the database is back;
    the other instance does not take the owner for dead meanwhile; nothing is retried."""
    job = _slow_job(backend, 1.0)
    stale_after = outage.settings.scheduler.stale_after
    # The peer serves another queue: it never runs the job, but reaps and sweeps like any.
    owner, peer = _instances(outage.settings, ("owner", ["default"]), ("peer", ["elsewhere"]))
    try:
        for instance in (owner, peer):
            instance.start()
        request = jobs.run_job_now(backend, job.id)
        _wait_for_its_step(backend, request.execution_id)
        outage.cut()
        time.sleep(1 + 2 * stale_after)  # the run ends meanwhile; every heartbeat fails
        assert _status(backend, request.execution_id) == "running"
        outage.restore()
        wait_until(lambda: _status(backend, request.execution_id) in FINISHED, 30, what="the end to be saved")
        time.sleep(2 * stale_after)  # time for a wrong reap or sweep to show
    finally:
        _stop(owner, peer)
    rows = executions(backend, job.id)
    assert [(r.id, r.status, r.worker_id, r.error) for r in rows] == [(request.execution_id, "success", "owner", None)]
    assert backend.runs.list_queue() == [], "no retry"


@pytest.mark.slow
def test_a_stopping_instance_saves_the_end_if_the_database_returns_within_its_grace(backend, outage):
    job = _slow_job(backend, 0.5)
    (owner,) = _instances(outage.settings, ("owner", ["default"]))
    owner.start()
    request = jobs.run_job_now(backend, job.id)
    try:
        _wait_for_its_step(backend, request.execution_id)
        outage.cut()
        time.sleep(1.5)  # the run has ended: its end is waiting to be saved
        stopping = threading.Thread(target=_stop, args=(owner,), kwargs={"grace": 30})
        stopping.start()
        time.sleep(3)
        outage.restore()
        stopping.join(60)
    finally:
        outage.restore()
    assert not stopping.is_alive()
    rows = executions(backend, job.id)
    assert [(r.status, r.error) for r in rows] == [("success", None)]
    assert backend.runs.list_queue() == []
    assert {w.id: w.status for w in backend.workers.list_workers()}["owner"] == "stopped"


def test_a_stop_during_the_save_window_tries_once_more_then_gives_up_with_the_end(backend, outage):
    """The instance is stopping (the run's cancel is set) while the database is still away: the
    runner does not wait out ``outcome_save_window`` (300 s), it tries once more and hands the
    end it could not save back to its caller (OutcomeNotSaved, never a guessed status)."""
    step = {"name": "w", "plugin": "Data_Processing.delay", "config": {"seconds": 0.3}}
    spec = PipelineSpec(name="quick", steps=[step])
    store = open_backend(outage.settings)
    runner = PipelineRunner(store, outage.settings)
    cancel = CancelToken()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(spec, execution_id="ends-in-an-outage", triggered_by="manual", cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - examined below
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for_its_step(backend, "ends-in-an-outage")
        outage.cut()
        time.sleep(1.5)
        assert thread.is_alive(), "still trying to save its end"
        cancel.cancel("interrupted: the instance was stopped before the run finished")
        thread.join(60)
    finally:
        outage.restore()
        store.close()
    assert not thread.is_alive()
    [error] = raised
    assert isinstance(error, OutcomeNotSaved) and error.record.status == "success"
    assert "its end could not be saved" in str(error)
    assert _status(backend, "ends-in-an-outage") == "running", "left to the usual recovery"


def test_after_an_outage_peers_are_judged_only_once_they_could_beat_again(backend, backend_settings, outage):
    """An instance whose own heartbeat failed (the database was away for everyone) does not
    declare its peers dead, on its first beat back, for the silence the outage caused: it waits
    ``stale_after`` for them to beat again. A peer that stays silent is reaped after that."""
    add_pipelines(backend, PipelineSpec(name="p", steps=[{"name": "w", "plugin": "Data_Processing.delay"}]))
    job = jobs.create_job(backend, name="j", pipeline="p", cron_expr="0 0 1 1 *", now=T0, max_concurrent=2)
    stale_after = outage.settings.scheduler.stale_after
    clock = FakeClock(T0)
    runs = {}
    for worker_id in ("owner", "gone"):
        backend.workers.register_worker(
            Worker(id=worker_id, host="elsewhere", pid=1, version="t", started_at=T0, heartbeat_at=T0)
        )
        runs[worker_id] = JobExecutionRecord(
            job_id=job.id, pipeline="p", start_time=T0, status="running", worker_id=worker_id, context={}, steps=[]
        )
        backend.save_execution(runs[worker_id])
    store = open_backend(outage.settings)
    try:
        reaper = fake_scheduler(store, outage.settings, clock, worker_id="reaper")
        reaper.register()
        outage.cut()
        clock.advance(1)
        with pytest.raises(PersistenceError):
            reaper.beat()
        outage.restore()
        clock.advance(stale_after + 5)  # the outage lasted longer than stale_after
        assert reaper.beat() == [], "nobody is judged on the silence of the outage"
        assert {r.status for r in backend.list_executions(job.id, 10)} == {"running"}
        clock.advance(stale_after - 1)
        backend.workers.heartbeat("owner", now=clock.now())  # the owner is back
        clock.advance(2)
        interrupted = reaper.beat()
    finally:
        store.close()
    assert [r.id for r in interrupted] == [runs["gone"].id]
    assert backend.get_execution(runs["owner"].id).status == "running"
    assert {w.id: w.status for w in backend.workers.list_workers()} == {
        "owner": "running",
        "gone": "dead",
        "reaper": "running",
    }
    assert clock.now() - T0 > timedelta(seconds=2 * stale_after)
