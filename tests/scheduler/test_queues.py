"""Named queues route a job's runs to the instances that serve its queue (a GPU machine serves
``gpu``, say): fires, queued runs, retries, load balancing, ``jobs run --wait`` and health. On
SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sched_helpers import T0, add_pipelines, bad_spec, executions, fake_scheduler, ok_spec

from mimir_tui.config import ConfigError, load_settings
from mimir_tui.errors import BadInput
from mimir_tui.health import check_health
from mimir_tui.persistence import RunRequest
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler
from mimir_tui.scheduler.pool import RunPool

FIRE = T0 + timedelta(minutes=1)


def two_jobs(backend):
    add_pipelines(backend, ok_spec())
    cpu = jobs.create_job(backend, name="cpu", pipeline="ok", cron_expr="* * * * *", now=T0)
    gpu = jobs.create_job(backend, name="gpu", pipeline="ok", cron_expr="* * * * *", now=T0, queue="gpu")
    return cpu, gpu


def test_an_instance_fires_only_the_jobs_of_its_queues(backend, backend_settings):
    cpu, gpu = two_jobs(backend)
    clock = FakeClock(FIRE)
    plain = fake_scheduler(backend, backend_settings, clock, worker_id="plain")  # queues: [default]
    both = fake_scheduler(backend, backend_settings, clock, worker_id="both", queues=["default", "gpu"])
    assert {r.job_id for r in plain.tick().claimed} == {cpu.id}
    assert {r.job_id for r in both.tick().claimed} == {gpu.id}  # the default one is taken already
    assert [(r.worker_id, r.status) for r in executions(backend, gpu.id)] == [("both", "success")]


def test_queued_runs_are_claimed_by_an_instance_serving_their_queue(backend, backend_settings):
    cpu, gpu = two_jobs(backend)
    request = jobs.run_job_now(backend, gpu.id)
    assert request.queue == "gpu"
    clock = FakeClock(T0)
    plain = fake_scheduler(backend, backend_settings, clock, worker_id="plain")
    now = backend.database_now()  # queued runs carry the database's time
    assert plain.poll_queue(now) == 0
    assert backend.runs.claim_request("x", queues=[]) is None  # serves nothing: takes nothing
    gpu_box = fake_scheduler(backend, backend_settings, clock, worker_id="gpu-box", queues=["gpu"])
    assert gpu_box.poll_queue(now) == 1
    assert backend.get_execution(request.execution_id).worker_id == "gpu-box"
    # Any queue, when none is named (the command that claims its own request by id does so).
    jobs.run_job_now(backend, cpu.id)
    assert backend.runs.claim_request("any") is not None


def test_a_retry_stays_in_its_jobs_queue(backend, backend_settings):
    add_pipelines(backend, bad_spec())
    jobs.create_job(
        backend,
        name="flaky",
        pipeline="bad",
        cron_expr="* * * * *",
        now=T0,
        queue="gpu",
        max_retries=1,
        retry_backoff_seconds=0,
    )
    clock = FakeClock(FIRE)
    gpu_box = fake_scheduler(backend, backend_settings, clock, worker_id="gpu-box", queues=["gpu"])
    gpu_box.tick()
    (retry,) = backend.runs.list_queue()
    assert (retry.triggered_by, retry.queue) == ("retry", "gpu")


def test_load_balancing_counts_only_peers_serving_the_queue(backend, backend_settings):
    _, gpu = two_jobs(backend)
    jobs.disable_job(backend, _.id)
    release = threading.Event()
    clock = FakeClock(FIRE - timedelta(seconds=1))
    pools = []

    def instance(worker_id, queues, slots, busy):
        s = Scheduler(backend, backend_settings, clock=clock, worker_id=worker_id, inline=False, queues=queues)
        s.pool = RunPool(slots, name=f"test-{worker_id}")
        pools.append(s.pool)
        for _ in range(busy):
            s.pool.submit(lambda: release.wait(30))
        s.register()
        return s

    try:
        busy = instance("busy-gpu", ["gpu"], 1, 1)
        instance("idle-cpu", ["default"], 4, 0)  # room, but not for gpu work
        clock.set(FIRE + timedelta(seconds=1))
        report = busy.tick()
        assert (len(report.claimed), report.deferred) == (1, 0)
    finally:
        release.set()
        for pool in pools:
            pool.wait_idle(10)
            pool.shutdown()


def test_jobs_run_wait_runs_it_here_when_no_live_instance_serves_its_queue(backend, backend_settings):
    """A service is up, but for the default queue only: the command does not wait for a claim
    that cannot come."""
    _, gpu = two_jobs(backend)
    cpu_service = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="cpu-service")
    cpu_service.register()
    request = jobs.run_job_now(backend, gpu.id)
    record = jobs.wait_for_run(backend, backend_settings, request, claim_after=30, timeout=20)
    assert record.status == "success" and record.worker_id != "cpu-service"


def test_job_and_config_queue_names_are_checked(backend, tmp_path):
    add_pipelines(backend, ok_spec())
    for bad in ("", "gpu,cpu", "-x", "a" * 65, "ünï"):
        with pytest.raises(BadInput, match="queue name"):
            jobs.create_job(backend, name="j", pipeline="ok", cron_expr="* * * * *", queue=bad)
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="* * * * *", queue="gpu.large:v2")
    with pytest.raises(BadInput, match="queue name"):
        jobs.update_job(backend, job.id, queue="a b")
    assert backend.get_job(job.id).queue == "gpu.large:v2"
    config = tmp_path / "config.yaml"
    for bad in ("[]", "[gpu, gpu]", "['a,b']"):
        config.write_text(f"scheduler:\n  queues: {bad}\n")
        with pytest.raises(ConfigError, match="scheduler.queues"):
            load_settings(str(config))


def test_health_shows_queues_and_who_serves_them(backend, backend_settings):
    two_jobs(backend)
    fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="cpu-service").register()
    report = check_health(backend, stale_after=10**9)  # the fake clock's heartbeat counts as live
    assert report["queues"] == {
        "default": {"jobs": 1, "queued": 0, "instances": 1},
        "gpu": {"jobs": 1, "queued": 0, "instances": 0},
    }
    (instance,) = report["instances"]
    assert instance["queues"] == ["default"]


def test_requests_made_before_queues_existed_are_in_the_default_queue(backend):
    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="* * * * *")
    backend.runs.enqueue(RunRequest(job_id=job.id, pipeline="ok"))
    assert [r.queue for r in backend.runs.list_queue()] == ["default"]
    assert job.queue == "default"


# -- a job moved to another queue --------------------------------------------------------------


def test_a_queued_run_moves_with_its_job(backend, backend_settings):
    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="0 0 1 1 *", now=T0, queue="gpu")
    request = jobs.run_job_now(backend, job.id)
    jobs.update_job(backend, job.id, queue="default")  # no GPU machine any more
    assert [r.queue for r in backend.runs.list_queue()] == ["default"]
    plain = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="plain")
    assert plain.poll_queue(backend.database_now()) == 1
    assert backend.get_execution(request.execution_id).worker_id == "plain"
    # and the other way: moved away, it is not claimed by the instance it left
    jobs.run_job_now(backend, job.id)
    jobs.update_job(backend, job.id, queue="gpu")
    assert plain.poll_queue(backend.database_now()) == 0


class _MovingRunner:
    """Moves the job to another queue while its run is under way."""

    def __init__(self, real, backend, job_id, queue):
        self.real, self.backend, self.job_id, self.queue = real, backend, job_id, queue

    def run(self, pipeline, **kw):
        jobs.update_job(self.backend, self.job_id, queue=self.queue)
        return self.real.run(pipeline, **kw)


def test_a_retry_goes_to_the_queue_its_job_is_in_now(backend, backend_settings):
    from mimir_tui.pipelines.runner import PipelineRunner

    add_pipelines(backend, bad_spec())
    job = jobs.create_job(
        backend, name="flaky", pipeline="bad", cron_expr="* * * * *", now=T0, max_retries=1, retry_backoff_seconds=0
    )
    runner = _MovingRunner(PipelineRunner(backend, backend_settings), backend, job.id, "gpu")
    plain = fake_scheduler(backend, backend_settings, FakeClock(FIRE), worker_id="plain", runner=runner)
    plain.tick()
    (retry,) = backend.runs.list_queue()
    assert retry.queue == "gpu"
    assert plain.poll_queue(backend.database_now() + timedelta(seconds=5)) == 0


def test_a_queue_move_is_seen_at_the_next_refresh(backend, backend_settings):
    add_pipelines(backend, ok_spec())
    a = jobs.create_job(backend, name="a", pipeline="ok", cron_expr="* * * * *", now=T0)
    jobs.create_job(backend, name="b", pipeline="ok", cron_expr="* * * * *", now=T0)
    plain = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="plain")
    gpu_box = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="gpu-box", queues=["gpu"])
    plain.refresh_jobs()
    gpu_box.refresh_jobs()
    assert a.id in plain._jobs and not gpu_box._jobs
    jobs.update_job(backend, a.id, queue="gpu")
    plain.refresh_jobs()
    gpu_box.refresh_jobs()
    assert a.id not in plain._jobs and set(gpu_box._jobs) == {a.id}


def test_health_counts_queued_runs_and_only_running_instances(backend, backend_settings):
    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="g", pipeline="ok", cron_expr="* * * * *", now=T0, queue="gpu", enabled=False)
    jobs.run_job_now(backend, job.id)  # a manual run of a disabled gpu job
    fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="cpu").register()
    gpu_box = fake_scheduler(backend, backend_settings, FakeClock(T0), worker_id="gpu-box", queues=["gpu"])
    gpu_box.register()
    backend.workers.heartbeat("gpu-box", status="stopping")  # draining: serves nothing any more
    report = check_health(backend, stale_after=10**9)
    assert report["queues"] == {
        "default": {"jobs": 0, "queued": 0, "instances": 1},
        "gpu": {"jobs": 0, "queued": 1, "instances": 0},
    }
