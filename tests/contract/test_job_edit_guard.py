"""An edit guarded by the ``updated_at`` it was made from (the job editor's save), on every
backend: written while the job is unchanged, refused (nothing written) once another instance
changed it; and what a delete would take, counted before it."""

from __future__ import annotations

import pytest

from mimir_tui.errors import Conflict, NotFound
from mimir_tui.persistence import JobExecutionRecord, PipelineConfig, RunRequest, utcnow
from mimir_tui.scheduler.jobs import create_job, delete_question, update_job


def _job(backend):
    backend.save_pipeline(PipelineConfig(name="p", config='{"name": "p", "steps": []}'))
    return create_job(backend, name="guarded", pipeline="p", cron_expr="0 4 * * *", job_id="guarded")


def test_an_edit_from_a_stale_copy_is_refused_and_writes_nothing(backend) -> None:
    loaded = _job(backend)
    update_job(backend, "guarded", name="first edit", expected_updated_at=loaded.updated_at)
    with pytest.raises(Conflict, match="changed by another instance"):
        update_job(backend, "guarded", name="stale edit", expected_updated_at=loaded.updated_at)
    fresh = backend.get_job("guarded")
    assert fresh.name == "first edit"
    update_job(backend, "guarded", cron_expr="0 5 * * *", expected_updated_at=fresh.updated_at)
    assert backend.get_job("guarded").cron_expr == "0 5 * * *"
    with pytest.raises(NotFound):
        update_job(backend, "missing", name="x", expected_updated_at=fresh.updated_at)


def test_the_delete_question_counts_the_executions_and_queued_runs(backend) -> None:
    _job(backend)
    for n in range(3):
        backend.save_execution(
            JobExecutionRecord(id=f"r{n}", job_id="guarded", pipeline="p", start_time=utcnow(), status="success")
        )
    backend.runs.enqueue(RunRequest(job_id="guarded", pipeline="p"))
    assert backend.jobs.dependents("guarded") == (3, 1)
    assert "with its 3 executions and 1 queued run?" in delete_question(backend, "guarded")
