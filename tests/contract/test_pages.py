"""The read model for pages (lean rows) against the whole records, on every backend: the same
rows, the same values once converted, the same filters and cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mimir_tui.persistence import JobExecutionRecord, PersistenceBackend, ScheduledJob
from mimir_tui.persistence.rows import ExecutionRow, JobRow

T0 = datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)


def _history(backend: PersistenceBackend) -> ScheduledJob:
    job = backend.save_job(ScheduledJob(name="pages", pipeline="etl", cron_expr="* * * * *"))
    statuses = ["success", "failed", "running", "success", "timed_out"]
    for i in range(12):
        backend.save_execution(
            JobExecutionRecord(
                job_id=job.id,
                pipeline="etl",
                start_time=T0 + timedelta(minutes=i // 2),
                status=statuses[i % 5],
                end_time=T0 + timedelta(minutes=i // 2, seconds=3),
                duration=3000,
                error="boom" if i % 5 == 1 else None,
                steps=[{"step_name": f"s{i}", "plugin": "p", "status": "success"}],
                context={"secret": "not in pages"},
                scheduled_for=T0 + timedelta(minutes=i),
                attempt=1 + i % 2,
                worker_id="w1",
            )
        )
    backend.save_execution(JobExecutionRecord(pipeline="adhoc", start_time=T0, status="success"))
    return job


def test_a_page_has_the_rows_and_values_of_the_records(backend: PersistenceBackend) -> None:
    job = _history(backend)
    records = backend.list_executions(job.id, 50)
    rows = backend.executions.page(job.id, 50)
    assert all(type(r) is ExecutionRow for r in rows)
    assert [r.id for r in rows] == [r.id for r in records] and len(rows) == 12
    for row, record in zip(rows, records, strict=True):
        assert row.as_dict() == {name: getattr(record, name) for name in ExecutionRow.COLUMNS}
        assert row.start_time.tzinfo is not None and row.steps[0]["step_name"].startswith("s")
    assert "context" not in ExecutionRow.COLUMNS


def test_a_page_filters_and_pages_like_list_executions(backend: PersistenceBackend) -> None:
    job = _history(backend)
    for kwargs in ({"status": "success"}, {"status": ["failed", "timed_out"]}, {"status": []}, {}):
        want = [r.id for r in backend.list_executions(job.id, 5, **kwargs)]
        assert [r.id for r in backend.executions.page(job.id, 5, **kwargs)] == want, kwargs
    everyone = [r.id for r in backend.executions.page(None, 100)]
    assert len(everyone) == 13  # the run outside any job too
    # Keyset paging: each page starts after the last row of the previous one, ties included.
    seen: list[str] = []
    cursor = None
    while True:
        page = backend.executions.page(job.id, 5, before=cursor)
        if not page:
            break
        seen.extend(r.id for r in page)
        cursor = (page[-1].start_time, page[-1].id)
    assert seen == [r.id for r in backend.list_executions(job.id, 100)]


def test_the_jobs_page(backend: PersistenceBackend) -> None:
    a = backend.save_job(
        ScheduledJob(
            name="b-job", pipeline="etl", cron_expr="0 2 * * *", enabled=False, timezone="Europe/Oslo", queue="gpu"
        )
    )
    b = backend.save_job(
        ScheduledJob(name="a-job", pipeline="etl", cron_expr="* * * * *", next_run=T0 + timedelta(hours=1))
    )
    rows = backend.jobs.page()
    assert all(type(r) is JobRow for r in rows)
    assert [r.id for r in rows] == [b.id, a.id]  # by name
    first, second = rows
    assert first.enabled is True and second.enabled is False
    assert first.next_run == T0 + timedelta(hours=1) and second.next_run is None
    assert (second.timezone, second.queue, second.cron_expr) == ("Europe/Oslo", "gpu", "0 2 * * *")
    full = {j.id: j for j in backend.list_jobs()}
    for row in rows:
        assert row.as_dict() == {name: getattr(full[row.id], name) for name in JobRow.COLUMNS}
