"""The dashboard's read model (mimir_tui.ops.overview) on every backend: what each pane shows,
read from a real store, without Textual."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

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
    assert rows["etl"][1:4] == ("valid", "3", "2")  # the state next to the name: the first thing to see
    assert rows["idle"][2:4] == ("1", "0")
    assert rows["broken"][1] == "error: broken.yaml:4: no steps"


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
    assert live[0] == "running" and live[3] == "██░░░ 2/3 s1" and live[4] == "1h"
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
    assert rows["a"][3] == "At 02:30 every day"
    assert rows["a"][7] == "in 1h30m"
    assert rows["b"][6:8] == ("no", "-")
    assert rows["c"][7] == "overdue 3m20s", "a next run no instance fired (a stopped service) is overdue"


def test_health_pane_lists_rows_per_table_and_failed_operations(backend):
    data = overview.read_health(backend, NOW)
    rows = dict(data.rows)
    assert data.summary == f"Store: healthy ({backend.backend})"
    assert rows["rows:job_executions"] == ("rows in job_executions", "0")
    assert rows["failed"] == ("failed operations", "0")


def test_executions_pane_filters_by_status_and_job_on_both_pages(backend):
    """A status filter reaches both pages (in flight and finished), a job filter too; the
    summary says what is filtered."""
    _pipeline(backend, "etl", 2)
    for job in ("a", "b"):
        backend.save_job(ScheduledJob(id=job, name=job, pipeline="etl", cron_expr="* * * * *"))
    for i, (job, status) in enumerate([("a", "failed"), ("a", "success"), ("b", "failed"), ("a", "running")]):
        end = None if status == "running" else NOW - timedelta(minutes=i)
        backend.save_execution(
            JobExecutionRecord(
                id=f"r{i}",
                job_id=job,
                pipeline="etl",
                start_time=NOW - timedelta(minutes=10 - i),
                end_time=end,
                status=status,
            )
        )
    keys = lambda data: [key for key, _ in data.rows]  # noqa: E731
    assert keys(overview.read_executions(backend, NOW, status="failed")) == ["r2", "r0"]
    assert keys(overview.read_executions(backend, NOW, status="running")) == ["r3"]
    data = overview.read_executions(backend, NOW, status="failed", job="a")
    assert keys(data) == ["r0"] and data.summary.endswith("(only status failed, job a)")
    assert keys(overview.read_executions(backend, NOW, job="a")) == ["r3", "r1", "r0"]


def test_execution_detail_has_the_timeline_outputs_and_log_path(backend, tmp_path):
    from mimir_tui.config import load_settings
    from mimir_tui.ops.execution import read_execution, rerun
    from mimir_tui.persistence import StepRecord

    (tmp_path / "config.yaml").write_text("logging:\n  executions_dir: ./logs/executions\n")
    settings = load_settings(tmp_path / "config.yaml")
    _pipeline(backend, "etl", 2)
    step = StepRecord(step_name="s0", plugin="Data_Processing.delay", start_time=NOW, duration=61_000, status="failed")
    step.error, step.output = "bad row\nmore", {"rows": [1, 2]}
    backend.save_execution(
        JobExecutionRecord(
            id="x1",
            pipeline="etl",
            start_time=NOW,
            end_time=NOW,
            duration=61_000,
            status="failed",
            steps=[step.to_json()],
            context={"k": "v"},
            error="s0 failed",
        )
    )
    detail = read_execution(backend, settings, "x1", NOW)
    assert detail.steps == [("1", ("1", "s0", "Data_Processing.delay", "failed", "12:00:00", "1m01s", "bad row"))]
    assert detail.data == {"context": {"k": "v"}, "outputs": {"s0": {"rows": [1, 2]}}}
    assert detail.summary.startswith("failed | etl | job - | manual, attempt 1")
    assert detail.log_path == tmp_path / "logs" / "executions" / "x1.log"
    request = rerun(backend, detail.record)  # no job: its pipeline is queued
    assert (request.pipeline, request.job_id) == ("etl", None)
    assert [r.execution_id for r in backend.runs.list_queue()] == [request.execution_id]


def test_jobs_pane_reads_one_page_filtered_by_the_database(backend):
    """Attack: 25 jobs and a page of 10; a filter with LIKE's wildcards in it. The read holds one
    page (the last one when asked past it), counts every match, and takes % and _ literally."""
    for i in range(25):
        name = f"job_{i:02d}" if i % 5 else f"nightly-{i:02d}"
        backend.save_job(ScheduledJob(id=f"j{i:02d}", name=name, pipeline="etl", cron_expr="* * * * *", enabled=i < 20))
    first = overview.read_jobs(backend, NOW, page_size=10)
    assert [k for k, _ in first.rows] == [f"j{i:02d}" for i in (1, 2, 3, 4, 6, 7, 8, 9, 11, 12)]  # by name
    assert (first.page, first.pages) == (0, 3) and first.summary.startswith("25 jobs, 20 enabled; page 1/3")
    last = overview.read_jobs(backend, NOW, page_size=10, page=9)
    assert (last.page, len(last.rows)) == (2, 5)  # past the end: the last page
    nightly = overview.read_jobs(backend, NOW, page_size=10, text=" NIGHTLY ")
    assert [k for k, _ in nightly.rows] == ["j00", "j05", "j10", "j15", "j20"]
    assert nightly.summary == "5 jobs match 'NIGHTLY', 4 enabled"
    underscored = [k for k, _ in overview.read_jobs(backend, NOW, text="b_0").rows]
    assert underscored == [f"j{i:02d}" for i in range(1, 10) if i % 5]
    assert overview.read_jobs(backend, NOW, text="b%0").rows == []  # % is a character, not a wildcard
    assert overview.read_jobs(backend, NOW, text="job!").rows == []


def test_runs_per_day_are_counted_by_utc_day_on_every_backend(backend):
    """The health pane's runs per day: one grouped query, days in UTC whatever the session's
    time zone, nothing before ``since``."""
    day = datetime(2026, 11, 20, tzinfo=UTC)
    starts = [day + timedelta(minutes=30), day + timedelta(hours=23, minutes=30), day + timedelta(days=1, minutes=5)]
    starts.append(day - timedelta(days=9))  # before the window
    for i, start in enumerate(starts):
        backend.save_execution(
            JobExecutionRecord(id=f"d{i}", pipeline="etl", start_time=start, end_time=start, status="success")
        )
    assert backend.executions.per_day(day - timedelta(days=6)) == {"2026-11-20": 2, "2026-11-21": 1}


def test_recent_statuses_are_each_jobs_latest_runs_newest_first_on_every_backend(backend):
    """The jobs pane's marks: per job of the page, the statuses of its latest ``per_job`` runs
    (start time, then id, newest first), one query; other jobs' runs and jobs without runs
    stay out; the jobs pane's column shows them oldest first."""
    _pipeline(backend, "etl", 1)
    for job in ("a", "b", "c", "quiet"):
        backend.save_job(ScheduledJob(id=job, name=job, pipeline="etl", cron_expr="* * * * *"))
    statuses = ["success", "failed", "cancelled", "interrupted", "timed_out", "running"]
    for i, status in enumerate(statuses):  # a: one a minute; b: the same, in reverse
        for job, order in (("a", i), ("b", len(statuses) - 1 - i)):
            start = NOW - timedelta(minutes=10 - order)
            backend.save_execution(
                JobExecutionRecord(id=f"{job}{i}", job_id=job, pipeline="etl", start_time=start, status=status)
            )
    for suffix in ("x", "y"):  # c: two runs that started at the same time, the id breaks the tie
        backend.save_execution(
            JobExecutionRecord(id=f"c{suffix}", job_id="c", pipeline="etl", start_time=NOW, status=f"{suffix}-status")
        )
    got = backend.executions.recent_statuses(["a", "b", "quiet", "c", "unknown", "a"], 4)
    assert got == {
        "a": ["running", "timed_out", "interrupted", "cancelled"],
        "b": ["success", "failed", "cancelled", "interrupted"],
        "c": ["y-status", "x-status"],
    }
    assert backend.executions.recent_statuses([], 4) == {} == backend.executions.recent_statuses(["a"], 0)
    rows = dict(overview.read_jobs(backend, NOW).rows)
    column = overview.JOB_COLUMNS.index("Recent")
    assert rows["a"][column] == "\u25cf\u2717\u25cb\u25d0\u25c6\u25b8"[-overview.RECENT :]
    assert rows["quiet"][column] == "-"


def test_the_demo_goes_only_into_a_sqlite_file(backend):
    """Attack: ``--demo`` against the shared database of a cluster would make every instance run
    the demo's jobs every minute. On PostgreSQL and MariaDB it is refused in one line, nothing
    written; on SQLite it seeds and queues its live run."""
    from mimir_tui.demo import start_demo
    from mimir_tui.errors import BadInput

    if backend.dialect == "sqlite":
        assert start_demo(backend) is not None
        assert backend.list_jobs()
        return
    with pytest.raises(BadInput, match=r"--demo .* not into the shared .* database; run it on a SQLite file"):
        start_demo(backend)
    assert backend.list_jobs() == [] and backend.list_pipelines() == []
