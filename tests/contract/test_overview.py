"""The dashboard's read model (mimir_tui.ops.overview) on every backend: what each pane shows,
read from a real store, without Textual."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from mimir_tui.ops import overview
from mimir_tui.persistence import JobExecutionRecord, PipelineConfig, ScheduledJob

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def _pipeline(backend, name: str, steps: int) -> None:
    config = {"name": name, "steps": [{"name": f"s{i}", "plugin": "Data_Processing.delay"} for i in range(steps)]}
    backend.save_pipeline(PipelineConfig(name=name, config=json.dumps(config)))


def test_pipelines_pane_counts_steps_and_the_jobs_that_use_each(backend):
    _pipeline(backend, "etl", 3)
    _pipeline(backend, "idle", 1)
    backend.save_pipeline(PipelineConfig(name="broken", config="{}", load_error="broken.yaml:4: no steps\nmore"))
    for i in range(2):
        backend.save_job(ScheduledJob(id=f"j{i}", name=f"j{i}", pipeline="etl", cron_expr="* * * * *"))
    rows = dict(overview.read_pipelines(backend, NOW).rows)
    assert rows["etl"][1:3] == ("3", "2")
    assert rows["idle"][1:3] == ("1", "0")
    assert rows["broken"][4] == "error: broken.yaml:4: no steps"


def test_executions_pane_puts_runs_in_flight_on_any_instance_above_finished_ones(backend):
    """A run in flight on another instance, older than every finished run, still comes first,
    with step k of N and its current step; finished runs follow, newest first, paged."""
    _pipeline(backend, "etl", 3)
    job = backend.save_job(ScheduledJob(id="nightly", name="nightly", pipeline="etl", cron_expr="0 2 * * *"))
    for i in range(5):
        backend.save_execution(
            JobExecutionRecord(
                id=f"done{i}",
                job_id=job.id,
                pipeline="etl",
                start_time=NOW - timedelta(minutes=10 - i),
                end_time=NOW - timedelta(minutes=9 - i),
                duration=61_000,
                status="success",
            )
        )
    backend.save_execution(
        JobExecutionRecord(
            id="live",
            job_id=job.id,
            pipeline="etl",
            start_time=NOW - timedelta(hours=1),
            status="running",
            steps=[{"step_name": "s0", "status": "success"}, {"step_name": "s1", "status": "running"}],
            worker_id="otherhost:4242:abcdef",
        )
    )
    data = overview.read_executions(backend, NOW, page_size=3)
    keys = [key for key, _ in data.rows]
    assert keys == ["live", "done4", "done3", "done2"]
    live = dict(data.rows)["live"]
    assert live[0] == "running" and live[3] == "2/3 s1" and live[4] == "1h"
    assert live[6] == "otherhost:4242:abcdef"
    assert dict(data.rows)["done4"][4] == "1m01s"
    assert data.summary.startswith("1 running, 0 queued")


def test_jobs_pane_shows_schedule_in_words_and_next_run_relative(backend):
    backend.save_job(
        ScheduledJob(id="a", name="a", pipeline="etl", cron_expr="30 2 * * *", next_run=NOW + timedelta(minutes=90))
    )
    backend.save_job(ScheduledJob(id="b", name="b", pipeline="etl", cron_expr="* * * * *", enabled=False))
    backend.save_job(
        ScheduledJob(id="c", name="c", pipeline="etl", cron_expr="* * * * *", next_run=NOW - timedelta(seconds=200))
    )
    rows = dict(overview.read_jobs(backend, NOW).rows)
    assert rows["a"][2] == "At 02:30 every day"
    assert rows["a"][6] == "in 1h30m"
    assert rows["b"][5:7] == ("no", "-")
    assert rows["c"][6] == "overdue 3m20s", "a next run no instance fired (a stopped service) is overdue"


def test_health_pane_lists_rows_per_table_and_failed_operations(backend):
    data = overview.read_health(backend, NOW)
    rows = dict(data.rows)
    assert data.summary == f"Store: healthy ({backend.backend})"
    assert rows["rows:job_executions"] == ("rows in job_executions", "0")
    assert rows["failed"] == ("failed operations", "0")
