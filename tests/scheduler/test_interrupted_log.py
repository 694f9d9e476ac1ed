"""Issue 10, item 7: a run's log ends with the status its execution is recorded with. An
interrupted run (its instance stopped, or another instance ended it) said ``finished:
cancelled`` in its log while the history said ``interrupted``."""

from __future__ import annotations

import pytest
from sched_helpers import add_pipelines, ok_spec, wait_until

from mimir_tui.persistence import open_backend
from mimir_tui.pipelines.execlog import execution_log_path
from mimir_tui.pipelines.runner import PipelineRunner
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.core import Scheduler
from mimir_tui.scheduler.executor import STOPPED_REASON


@pytest.mark.slow
def test_a_run_stopped_with_its_instance_logs_interrupted_and_is_retried_once(sqlite_settings):
    with open_backend(sqlite_settings) as backend:
        add_pipelines(backend, ok_spec("slow", seconds=30))
        job = jobs.create_job(
            backend, name="slow", pipeline="slow", cron_expr="0 0 1 1 *", max_retries=1, retry_backoff_seconds=0
        )
        scheduler = Scheduler(backend, sqlite_settings)
        scheduler.start()
        request = jobs.run_job_now(backend, job.id)
        try:
            wait_until(lambda: any(r.steps for r in backend.list_executions(job.id, 5)), timeout=10, what="its step")
        finally:
            scheduler.stop(grace=0.2)
        stored = backend.get_execution(request.execution_id)
        assert (stored.status, stored.error) == ("interrupted", STOPPED_REASON)
        text = execution_log_path(sqlite_settings, stored.id).read_text()
        assert f"finished: interrupted in {stored.duration} ms: {STOPPED_REASON}" in text.splitlines()[-1]
        assert "finished: cancelled" not in text
        assert scheduler.executor.stopped_runs == 1
        assert [(r.triggered_by, r.attempt) for r in backend.runs.list_queue()] == [("retry", 2)]


def test_a_run_another_instance_ended_logs_that_end(sqlite_settings):
    """A peer took the instance for dead and interrupted its run while its first step ran: the
    run stops at the next save and its log ends with the peer's verdict."""
    with open_backend(sqlite_settings) as backend:
        spec = PipelineSpec(
            name="two",
            steps=[{"name": f"s{i}", "plugin": "Data_Processing.delay", "config": {"seconds": 0.1}} for i in (1, 2)],
        )

        def reaped(step, record) -> None:
            if (step.step_name, step.status) == ("s1", "running"):
                backend.executions.interrupt_executions([record.id], "interrupted: its instance stopped heartbeating")

        runner = PipelineRunner(backend, sqlite_settings)
        final = runner.run(spec, execution_id="ended-elsewhere", worker_id="w-old", on_step=reaped)
        assert (final.status, final.error) == ("interrupted", "interrupted: its instance stopped heartbeating")
        last = runner.log_path(final.id).read_text().splitlines()[-1]
        assert "finished: interrupted in " in last, last
        assert last.endswith("execution ended-elsewhere was ended by another instance (status interrupted)")
