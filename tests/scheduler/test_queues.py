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
from mimir_tui.scheduler.core import RunPool, Scheduler

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
    assert backend.claim_request("x", queues=[]) is None  # serves nothing: takes nothing
    gpu_box = fake_scheduler(backend, backend_settings, clock, worker_id="gpu-box", queues=["gpu"])
    assert gpu_box.poll_queue(now) == 1
    assert backend.get_execution(request.execution_id).worker_id == "gpu-box"
    # Any queue, when none is named (the command that claims its own request by id does so).
    jobs.run_job_now(backend, cpu.id)
    assert backend.claim_request("any") is not None


def test_a_retry_stays_in_its_jobs_queue(backend, backend_settings):
    add_pipelines(backend, bad_spec())
    job = jobs.create_job(backend, name="flaky", pipeline="bad", cron_expr="* * * * *", now=T0, queue="gpu",
                          max_retries=1, retry_backoff_seconds=0)
    clock = FakeClock(FIRE)
    gpu_box = fake_scheduler(backend, backend_settings, clock, worker_id="gpu-box", queues=["gpu"])
    gpu_box.tick()
    (retry,) = backend.list_queue()
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
    report = check_health(backend, stale_after=10 ** 9)  # the fake clock's heartbeat counts as live
    assert report["queues"] == {"default": {"jobs": 1, "instances": 1}, "gpu": {"jobs": 1, "instances": 0}}
    (instance,) = report["instances"]
    assert instance["queues"] == ["default"]


def test_requests_made_before_queues_existed_are_in_the_default_queue(backend):
    add_pipelines(backend, ok_spec())
    job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="* * * * *")
    backend.enqueue(RunRequest(job_id=job.id, pipeline="ok"))
    assert [r.queue for r in backend.list_queue()] == ["default"]
    assert job.queue == "default"
